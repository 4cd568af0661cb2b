#include "bg_jobs/actors/detail/sealing.hpp"

#include "bg_jobs/core/errc.hpp"

namespace bg_jobs::detail {

namespace {

std::string payload_context(const std::string& name) {
  return name + "/payload";
}

std::string meta_context(const std::string& name, const std::string& key) {
  return name + "/meta/" + key;
}

} // namespace

caf::expected<std::optional<job_request>> sealed_request(const job_request& r,
                                                         const keyring* keys) {
  if (!r.is_encrypted() && r.secret_meta().empty())
    return std::optional<job_request>{};
  if (!keys || keys->empty())
    return make_error(errc::invalid_argument,
                      "a job '" + printable(r.name()) +
                          "' asks for encryption, and this node has no keys "
                          "(builder::with_encryption)");
  if (auto ok = r.validate(); !ok)
    return std::move(ok.error());
  auto copy = r;
  if (auto& u = r.unique(); u && !u->key) {
    auto kept = *u;
    kept.key = r.unique_key(); // from the plain payload
    copy.with_unique(std::move(kept));
  }
  if (r.is_encrypted())
    copy.with_payload(keys->seal(r.payload(), payload_context(r.name())));
  if (!r.secret_meta().empty()) {
    auto meta = r.meta();
    for (auto& k : r.secret_meta())
      meta[k] = keys->seal(meta[k], meta_context(r.name(), k));
    copy.with_meta(std::move(meta));
  }
  return std::optional<job_request>{std::move(copy)};
}

caf::error open_job(job& j, const keyring* keys) {
  bool sealed_payload = keyring::sealed(j.payload);
  bool sealed_meta = false;
  if (j.meta.is_object())
    for (auto& [k, v] : j.meta.items())
      sealed_meta = sealed_meta || keyring::sealed(v);
  if (!sealed_payload && !sealed_meta)
    return caf::none;
  auto fail = [&](const std::string& what, const caf::error& why) {
    return make_error(errc::decryption_failed,
                      "job " + std::to_string(j.id) + "'s " + what + " " +
                          message_of(why));
  };
  if (!keys) {
    auto key = sealed_payload ? keyring::key_of(j.payload) : std::string{};
    return make_error(errc::decryption_failed,
                      "job " + std::to_string(j.id) +
                          " carries encrypted values, and this node has no "
                          "keys (builder::with_encryption)" +
                          (key.empty() ? "" : "; its payload's key is '" +
                                                  printable(key) + "'"));
  }
  auto payload = j.payload;
  if (sealed_payload) {
    auto opened = keys->open(j.payload, payload_context(j.name));
    if (!opened)
      return fail("payload is", opened.error());
    payload = std::move(*opened);
  }
  auto meta = j.meta;
  if (sealed_meta)
    for (auto& [k, v] : meta.items())
      if (keyring::sealed(v)) {
        auto opened = keys->open(v, meta_context(j.name, k));
        if (!opened)
          return fail("metadata '" + printable(k) + "' is", opened.error());
        v = std::move(*opened);
      }
  j.payload = std::move(payload);
  j.meta = std::move(meta);
  return caf::none;
}

} // namespace bg_jobs::detail
