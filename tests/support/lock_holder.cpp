// Holds a write lock on a SQLite database from a separate process, so that
// tests can see how bg_jobs behaves against a database locked by someone
// else. Usage: lock_holder <db-path> <ready-file> <hold-ms>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include <sqlite3.h>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: lock_holder <db> <ready-file> <hold-ms>\n");
    return 2;
  }
  sqlite3* db = nullptr;
  if (sqlite3_open(argv[1], &db) != SQLITE_OK ||
      sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) !=
          SQLITE_OK) {
    std::fprintf(stderr, "lock_holder: %s\n", sqlite3_errmsg(db));
    return 1;
  }
  if (auto f = std::fopen(argv[2], "w"))
    std::fclose(f);
  std::this_thread::sleep_for(std::chrono::milliseconds{std::atoi(argv[3])});
  sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  return 0;
}
