#pragma once

#include <chrono>
#include <csignal>
#include <spawn.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <vector>

extern char** environ;

namespace bg_jobs::test {

/// A child process started with posix_spawn; killed if still running when
/// the object goes away.
class child_process {
public:
  explicit child_process(std::vector<std::string> args) {
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) !=
        0)
      pid_ = -1;
  }

  ~child_process() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  bool started() const { return pid_ > 0; }

  /// Whether it is still running or finished with status 0 (not killed by
  /// a signal, not failed).
  bool healthy() {
    wait(std::chrono::milliseconds{0});
    return !exited_ || status_ == 0;
  }

  void kill(int sig = SIGKILL) {
    if (pid_ > 0 && !exited_)
      ::kill(pid_, sig);
  }

  /// Stops the process (SIGSTOP) and returns once every thread of it has
  /// stopped (a signal is delivered after `kill` returns); false if it
  /// exited instead.
  bool stop() {
    if (pid_ <= 0 || exited_)
      return false;
    ::kill(pid_, SIGSTOP);
    int status = 0;
    if (waitpid(pid_, &status, WUNTRACED) != pid_)
      return false;
    if (WIFSTOPPED(status))
      return true;
    exited_ = true;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return false;
  }

  /// Waits up to `limit` for the exit; returns the exit status, or -1 when
  /// the process is still running (or died by a signal).
  int wait(std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!exited_) {
      int status = 0;
      auto r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        break;
      }
      if (std::chrono::steady_clock::now() > deadline)
        return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds{5});
    }
    return status_;
  }

private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = -1;
};

} // namespace bg_jobs::test
