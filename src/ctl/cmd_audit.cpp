// audit: weak role passwords (tested against pg_authid's verifiers), exposed secret files,
// trust auth on a reachable listener, admin users without a password.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>

#include "usher/ctl/context.h"
#include "usher/ctl/files.h"
#include "usher/ctl/json.h"
#include "usher/ctl/password.h"

namespace usher::ctl {
namespace {

struct Finding {
  std::string severity;  // high | medium | low
  std::string kind;      // weak-password | secret-file-mode | trust-listener | admin-no-password
                         // | plaintext-secret
  std::string subject;
  std::string message;
};

std::string octal(mode_t m) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", unsigned(m));
  return buf;
}

// How a weak password is described without printing it.
std::string weakCategory(std::string_view candidate, std::string_view role) {
  auto why = passwordWeakness(candidate, role);
  if (!why) return "is guessable";
  if (why->find("port number") != std::string::npos) return "is a port number";
  if (why->find("user name") != std::string::npos) return "is the user name";
  if (why->find("built-in list") != std::string::npos) return "is a common password";
  return "is a trivial variant of the role name";
}

// Some(error) when the roles could not be audited.
std::optional<std::string> auditRoles(const Context& ctx, std::vector<Finding>& out,
                                      int& rolesChecked) {
  auto pg = ctx.connectPg();
  if (!pg) return pg.error().message;
  auto r =
      pg->query("SELECT rolname, rolpassword FROM pg_authid WHERE rolcanlogin ORDER BY rolname");
  if (!r) {
    return "reading pg_authid: " + r.error().message +
           (r.error().sqlstate == "42501" ? " (audit needs a superuser)" : "");
  }
  const bool show = ctx.args().has("show-password");
  for (size_t i = 0; i < r->rows.size(); ++i) {
    const std::string role = r->value(i, "rolname");
    const auto& stored = r->rows[i][1];
    ++rolesChecked;
    if (!stored || stored->empty()) continue;  // no password: peer/trust only, nothing to guess
    if (stored->starts_with("SCRAM-SHA-256$")) {
      auto colon = stored->find(':');
      int iterations = std::atoi(stored->c_str() + 14);
      if (colon == std::string::npos || iterations > 1'000'000) continue;
    }
    if (stored->starts_with("md5")) {
      out.push_back({"medium", "md5-password", role,
                     "role " + role +
                         " has an md5 password hash: set it again with "
                         "password_encryption = scram-sha-256 (`usherctl rotate-password`)"});
    }
    for (const auto& candidate : weakPasswordCandidates(role)) {
      if (!passwordMatches(candidate, role, *stored)) continue;
      std::string msg = "role " + role + "'s password " + weakCategory(candidate, role);
      if (show) msg += " (\"" + candidate + "\")";
      msg += ": anyone who can reach PostgreSQL or usher can log in as " + role +
             "; rotate it (`usherctl rotate-password`) and fix what depends on it";
      out.push_back({"high", "weak-password", role, msg});
      break;
    }
  }
  return std::nullopt;
}

void auditSecretFiles(const Context& ctx, const config::Config* cfg, std::vector<Finding>& out) {
  const std::string dir = ctx.secretsDir();
  std::vector<std::string> files;
  if (auto mode = fileMode(dir)) {
    if (*mode & 077) {
      out.push_back({"medium", "secret-dir-mode", dir,
                     "the secrets directory " + dir + " has mode " + octal(*mode) +
                         ": other users can list it (chmod 700)"});
    }
    if (DIR* d = ::opendir(dir.c_str())) {
      while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        files.push_back(joinPath(dir, name));
      }
      ::closedir(d);
    }
  }
  if (cfg && !cfg->authFile.empty()) files.push_back(cfg->authFile);
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  for (const auto& f : files) {
    struct stat st {};
    if (::stat(f.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    const mode_t mode = st.st_mode & 07777;
    if (mode & 077) {
      out.push_back({"high", "secret-file-mode", f,
                     "secret file " + f + " has mode " + octal(mode) + ": readable by " +
                         ((mode & 070) && (mode & 07) ? "group and others"
                          : (mode & 070)              ? "its group"
                                                      : "others") +
                         " (chmod 600 " + f + ")"});
    }
  }
}

bool isLoopback(const std::string& addr) {
  return addr == "127.0.0.1" || addr == "::1" || addr == "localhost" || addr.starts_with("127.");
}

void auditConfig(const config::Config& cfg, std::vector<Finding>& out) {
  using config::AuthType;
  const bool noPassword = cfg.authType == AuthType::Trust || cfg.authType == AuthType::Any;
  if (noPassword) {
    for (const auto& addr : cfg.listenAddrs) {
      if (isLoopback(addr)) continue;
      out.push_back({"high", "trust-listener", cfg.path,
                     std::string("auth_type = ") + config::toString(cfg.authType) +
                         " with listen_addr " + addr + ": anyone who can reach port " +
                         std::to_string(cfg.listenPort) +
                         " logs in as any user without a password (use scram-sha-256)"});
    }
  }
  for (const auto& admin : cfg.adminUsers) {
    const auth::Secret* s = cfg.findSecret(admin);
    if (!s || s->empty()) {
      out.push_back(
          {noPassword ? "high" : "medium", "admin-no-password", admin,
           "admin user " + admin +
               " has no password in usher's config (auth_file or "
               "[users." +
               admin + "])" +
               (noPassword ? ": with auth_type " + std::string(config::toString(cfg.authType)) +
                                 " anyone can open the admin console as it"
                           : ": it cannot log in to the console")});
    }
  }
  for (const auto& [user, secret] : cfg.secrets) {
    if (secret.kind() == auth::SecretKind::Plain) {
      out.push_back({"medium", "plaintext-secret", user,
                     "usher's config holds a plaintext password for " + user +
                         ": store its SCRAM verifier instead (SELECT rolpassword FROM pg_authid)"});
    }
  }
}

}  // namespace

int cmdAudit(Context& ctx) {
  auto cfg = ctx.loadConfig();
  if (!cfg) return ctx.fail(cfg.error().message);
  std::vector<Finding> findings;
  int rolesChecked = 0;
  std::optional<std::string> roleError;
  if (!ctx.args().has("skip-roles")) roleError = auditRoles(ctx, findings, rolesChecked);
  auditSecretFiles(ctx, cfg->get(), findings);
  if (*cfg) auditConfig(**cfg, findings);

  if (ctx.json()) {
    JsonWriter w;
    w.beginObject()
        .field("ok", findings.empty() && !roleError)
        .field("roles_checked", rolesChecked);
    w.key("roles_error");
    if (roleError) {
      w.value(*roleError);
    } else {
      w.null();
    }
    w.key("findings").beginArray();
    for (const auto& f : findings) {
      w.beginObject()
          .field("severity", f.severity)
          .field("kind", f.kind)
          .field("subject", f.subject)
          .field("message", f.message)
          .endObject();
    }
    w.endArray().endObject();
    ctx.emitJson(w.str());
  } else {
    for (const auto& f : findings) {
      std::string sev = f.severity;
      std::transform(sev.begin(), sev.end(), sev.begin(), ::toupper);
      ctx.info(sev + "  " + f.kind + "  " + f.message);
    }
    if (findings.empty()) {
      ctx.info("no findings (" + std::to_string(rolesChecked) + " login roles checked)");
    }
  }
  if (roleError) return ctx.fail("could not audit role passwords: " + *roleError);
  return findings.empty() ? kExitOk : kExitProblems;
}

}  // namespace usher::ctl
