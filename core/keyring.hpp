#pragma once

#include <array>
#include <map>
#include <string>
#include <string_view>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

namespace bg_jobs {

/// The keys that encrypt what jobs carry (`job_request::encrypted`,
/// `with_secret_meta`): libsodium's XChaCha20-Poly1305, authenticated, one
/// random nonce per value, bound to the job's name and the value's place so
/// that a ciphertext moved elsewhere does not open. Each key has an id,
/// stored with every value it encrypts, so that keys can rotate: new values
/// take the current key; values under older keys open while those keys
/// stay in the ring.
class keyring {
public:
  keyring() = default;
  keyring(const keyring&) = default;
  keyring& operator=(const keyring&) = default;
  /// Wipes the keys from memory.
  ~keyring();

  /// Adds a 32-byte key, given as 64 hexadecimal digits, under `id` (1 to
  /// 32 characters of `A-Za-z0-9_.-`). The first key added encrypts new
  /// values until `encrypt_with` names another. `invalid_argument` for a
  /// bad or repeated id or a key that is not 64 hex digits.
  caf::error add(const std::string& id, std::string_view hex_key);

  /// New values are encrypted with the key `id` (added before).
  caf::error encrypt_with(const std::string& id);

  bool empty() const { return keys_.empty(); }

  /// The id of the key new values take; empty when there is none.
  const std::string& current() const { return current_; }

  bool has(const std::string& id) const { return keys_.count(id) > 0; }

  /// `value` encrypted with the current key, as the envelope stored in its
  /// place: `{"$bg_jobs_sealed": 1, "key": id, "nonce": ..., "data": ...}`.
  /// `context` (the job's name and the value's place) must be given again
  /// to open it. Requires a key.
  nlohmann::json seal(const nlohmann::json& value,
                      const std::string& context) const;

  /// The value inside `envelope`; `invalid_argument` when it is not an
  /// envelope, `decryption_failed` when its key is not in the ring or it
  /// does not open with it (another key under the same id, another
  /// context, or altered).
  caf::expected<nlohmann::json> open(const nlohmann::json& envelope,
                                     const std::string& context) const;

  /// Whether `value` is an envelope made by `seal`.
  static bool sealed(const nlohmann::json& value);

  /// The key id an envelope names ("" when `value` is none).
  static std::string key_of(const nlohmann::json& value);

private:
  std::map<std::string, std::array<unsigned char, 32>> keys_;
  std::string current_;
};

} // namespace bg_jobs
