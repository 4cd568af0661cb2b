#include "bg_jobs/core/keyring.hpp"

#include <cctype>
#include <cstring>
#include <vector>

#include <sodium.h>

#include "bg_jobs/core/errc.hpp"
#include "bg_jobs/core/job_request.hpp"

namespace bg_jobs {

namespace {

constexpr char sealed_tag[] = "$bg_jobs_sealed";

bool valid_id(const std::string& id) {
  if (id.empty() || id.size() > 32)
    return false;
  for (char c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' ||
          c == '.' || c == '-'))
      return false;
  return true;
}

std::string to_base64(const unsigned char* data, size_t size) {
  std::string out(
      sodium_base64_ENCODED_LEN(size, sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), data, size,
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

bool from_base64(const std::string& text, std::vector<unsigned char>& out) {
  out.resize(text.size());
  size_t size = 0;
  if (sodium_base642bin(out.data(), out.size(), text.c_str(), text.size(),
                        nullptr, &size, nullptr,
                        sodium_base64_VARIANT_ORIGINAL) != 0)
    return false;
  out.resize(size);
  return true;
}

} // namespace

keyring::~keyring() {
  for (auto& [id, key] : keys_)
    sodium_memzero(key.data(), key.size());
}

caf::error keyring::add(const std::string& id, std::string_view hex_key) {
  if (sodium_init() < 0)
    return make_error(errc::invalid_config, "libsodium cannot start");
  if (!valid_id(id))
    return make_error(errc::invalid_argument,
                      "a key id is 1 to 32 characters of A-Za-z0-9_.-, got '" +
                          printable(id) + "'");
  if (keys_.count(id))
    return make_error(errc::invalid_argument,
                      "key '" + id + "' is in the ring already");
  std::array<unsigned char, 32> key{};
  size_t size = 0;
  if (hex_key.size() != 64 ||
      sodium_hex2bin(key.data(), key.size(), hex_key.data(), hex_key.size(),
                     nullptr, &size, nullptr) != 0 ||
      size != key.size()) {
    sodium_memzero(key.data(), key.size());
    return make_error(errc::invalid_argument,
                      "key '" + id +
                          "' must be 32 bytes as 64 hexadecimal digits");
  }
  keys_.emplace(id, key);
  sodium_memzero(key.data(), key.size());
  if (current_.empty())
    current_ = id;
  return caf::none;
}

caf::error keyring::encrypt_with(const std::string& id) {
  if (!keys_.count(id))
    return make_error(errc::invalid_argument,
                      "no key '" + printable(id) + "' in the ring");
  current_ = id;
  return caf::none;
}

nlohmann::json keyring::seal(const nlohmann::json& value,
                             const std::string& context) const {
  auto& key = keys_.at(current_);
  auto plain = value.dump();
  std::array<unsigned char, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES>
      nonce{};
  randombytes_buf(nonce.data(), nonce.size());
  std::vector<unsigned char> cipher(plain.size() +
                                    crypto_aead_xchacha20poly1305_ietf_ABYTES);
  unsigned long long size = 0;
  auto ad = current_ + "\n" + context;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      cipher.data(), &size, reinterpret_cast<const unsigned char*>(plain.data()),
      plain.size(), reinterpret_cast<const unsigned char*>(ad.data()),
      ad.size(), nullptr, nonce.data(), key.data());
  sodium_memzero(plain.data(), plain.size());
  return {{sealed_tag, 1},
          {"key", current_},
          {"nonce", to_base64(nonce.data(), nonce.size())},
          {"data", to_base64(cipher.data(), size)}};
}

caf::expected<nlohmann::json> keyring::open(const nlohmann::json& envelope,
                                            const std::string& context) const {
  if (!sealed(envelope))
    return make_error(errc::invalid_argument, "not an encrypted value");
  auto id = envelope["key"].get<std::string>();
  auto k = keys_.find(id);
  if (k == keys_.end())
    return make_error(errc::decryption_failed,
                      "encrypted with key '" + printable(id) +
                          "', which this node does not have");
  std::vector<unsigned char> nonce, cipher;
  if (!from_base64(envelope["nonce"].get<std::string>(), nonce) ||
      nonce.size() != crypto_aead_xchacha20poly1305_ietf_NPUBBYTES ||
      !from_base64(envelope["data"].get<std::string>(), cipher) ||
      cipher.size() < crypto_aead_xchacha20poly1305_ietf_ABYTES)
    return make_error(errc::decryption_failed,
                      "encrypted under key '" + printable(id) +
                          "' but malformed");
  std::string plain(cipher.size() - crypto_aead_xchacha20poly1305_ietf_ABYTES,
                    '\0');
  unsigned long long size = 0;
  auto ad = id + "\n" + context;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(plain.data()), &size, nullptr,
          cipher.data(), cipher.size(),
          reinterpret_cast<const unsigned char*>(ad.data()), ad.size(),
          nonce.data(), k->second.data()) != 0)
    return make_error(errc::decryption_failed,
                      "encrypted with key '" + printable(id) +
                          "' and does not open with it (another key under "
                          "that id, or altered)");
  plain.resize(size);
  auto value = exceeds_payload_depth(plain)
                   ? nlohmann::json(nlohmann::json::value_t::discarded)
                   : nlohmann::json::parse(plain, nullptr, false);
  sodium_memzero(plain.data(), plain.size());
  if (value.is_discarded())
    return make_error(errc::decryption_failed,
                      "encrypted, and not JSON once opened");
  return value;
}

bool keyring::sealed(const nlohmann::json& value) {
  if (!value.is_object() || value.size() != 4)
    return false;
  auto tag = value.find(sealed_tag);
  auto key = value.find("key");
  auto nonce = value.find("nonce");
  auto data = value.find("data");
  return tag != value.end() && tag->is_number_integer() && *tag == 1 &&
         key != value.end() && key->is_string() && nonce != value.end() &&
         nonce->is_string() && data != value.end() && data->is_string();
}

std::string keyring::key_of(const nlohmann::json& value) {
  return sealed(value) ? value["key"].get<std::string>() : std::string{};
}

} // namespace bg_jobs
