// The `mikcar` command: flags and environment (SPEC §1.1), backend URL resolution with embedded
// defaults, start-up checks. The only code in the project that exits the process.
#include <pthread.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/logging.h"
#include "common/units.h"
#include "mikcar/builder.h"
#include "mikcar/uri.h"
#include "server/config.h"
#include "server/services.h"

#ifndef MIKCAR_VERSION
#define MIKCAR_VERSION "0.0.0"
#endif
#ifndef MIKCAR_GIT_REVISION
#define MIKCAR_GIT_REVISION "unknown"
#endif

namespace {

constexpr int kExitUsage = 1;    // no service enabled (compat)
constexpr int kExitStartup = 2;  // bad configuration or unreachable backend

// Exits without running exit handlers or static destructors: a backend opened before the
// failure may have threads still running (a sweeper, a log writer), and library cleanup under
// them crashes (a TSan run saw OpenSSL's lock freed under the Redis queue's sweeper). Nothing has
// been acknowledged yet, so there is nothing to flush.
[[noreturn]] void Die(const std::string& line) {
  std::fprintf(stderr, "mikcar: %s\n", line.c_str());
  std::fflush(stderr);
  std::_Exit(kExitStartup);
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string VersionText() {
  std::string text =
      std::string("mikcar ") + MIKCAR_VERSION + " (git " + MIKCAR_GIT_REVISION + ")\nbackends:";
  for (const auto& service : mikcar::server::Services()) {
    text += "\n  " + service.name + ":";
    if (!service.compiled_in) {
      text += " (not compiled in)";
      continue;
    }
    for (const auto& backend : service.backends()) {
      if (backend.compiled_in) text += " " + backend.name;
    }
  }
  return text;
}

// "3 scoped token(s): tenant-a, reporting, tokens[2]" (names only, never a token).
std::string TokenNames(const std::vector<mikcar::ScopedToken>& tokens) {
  std::string names;
  for (const auto& t : tokens) names += (names.empty() ? "" : ", ") + t.scope.name;
  return std::to_string(tokens.size()) + " scoped token(s)" + (names.empty() ? "" : ": " + names);
}

// Fills in, from the configuration file, every setting that neither a flag nor the environment
// gave: each is parsed exactly as its long flag would be. Returns where each value it used came
// from ("mikcar.toml:3"), by key.
std::map<std::string, std::string> ApplyConfig(CLI::App& app,
                                               const mikcar::server::ConfigFile& file) {
  std::map<std::string, std::string> origins;
  static const std::set<std::string> kNotInFile{"config", "help", "version", "list_backends"};
  for (const auto& setting : file.settings) {
    std::string flag = "--" + setting.key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    CLI::Option* option =
        kNotInFile.contains(setting.key) ? nullptr : app.get_option_no_throw(flag);
    if (option == nullptr) {
      Die(setting.where + ": " + setting.key +
          ": unknown setting; expected a long flag of mikcar --help without its dashes, e.g. "
          "max_body for --max-body");
    }
    if (option->count() > 0) continue;  // a flag or the environment gave it
    try {
      option->add_result(setting.value);
      option->run_callback();
    } catch (const CLI::ParseError& e) {
      Die(setting.where + ": " + setting.key + ": " + e.what());
    }
    origins[setting.key] = setting.where;
  }
  return origins;
}

void ListBackends() {
  std::printf("%-8s %-24s %-10s %-13s %s\n", "SERVICE", "SCHEMES", "BACKEND", "STATUS",
              "DESCRIPTION");
  for (const auto& service : mikcar::server::Services()) {
    if (!service.compiled_in) {
      std::printf("%-8s %-24s %-10s %-13s %s\n", service.name.c_str(), "-", "-", "not built",
                  ("service not compiled in (" + service.cmake_option + ")").c_str());
      continue;
    }
    for (const auto& backend : service.backends()) {
      std::string schemes;
      for (const auto& s : backend.schemes) schemes += (schemes.empty() ? "" : " ") + s + "://";
      std::printf("%-8s %-24s %-10s %-13s %s\n", service.name.c_str(), schemes.c_str(),
                  backend.name.c_str(),
                  backend.compiled_in ? "compiled in" : ("off: " + backend.cmake_option).c_str(),
                  backend.doc.c_str());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  // SIGINT/SIGTERM (and SIGHUP) stay blocked (pending) until wait() has installed its handler,
  // and every thread started from here inherits the mask: a SIGTERM arriving just after
  // "listening on" used to kill the process with the default action instead of shutting down.
  sigset_t handled;
  sigemptyset(&handled);
  for (int signal : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&handled, signal);
  pthread_sigmask(SIG_BLOCK, &handled, nullptr);

  // Every connection and open object is a file descriptor: use all the hard limit allows.
  if (struct rlimit files;
      ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }

  CLI::App app{"mikcar: infrastructure for WebAssembly handlers over plain HTTP", "mikcar"};
  mikcar::ServerOptions options;
  mikcar::server::ServiceSettings settings;
  std::string port = "3001", host = "127.0.0.1", token, data_dir = "./mikcar-data",
              max_body = "10MiB", max_object_size = "5GiB", timeout = "30s", log_level = "info",
              log_format = "text", cors, threads = "0";
  bool all = false, list_backends = false, version = false, no_compression = false, no_tcp = false;
  std::vector<bool> enabled(mikcar::server::Services().size(), false);
  std::vector<std::string> service_names;
  for (const auto& service : mikcar::server::Services()) service_names.push_back(service.name);
  std::string config_path;

  app.add_option("--config", config_path,
                 "TOML file with any setting below, backend URLs and scoped tokens (flags and "
                 "env win over it; SIGHUP reloads its tokens)")
      ->envname("MIKCAR_CONFIG");
  app.add_option("-p,--port", port, "TCP port (0 = pick a free one)")->envname("PORT");
  app.add_option("--host", host, "bind address (0.0.0.0 or :: for all interfaces)")
      ->envname("HOST");
  app.add_option("--unix-socket", options.unix_socket, "also listen on this Unix socket")
      ->envname("MIKCAR_UNIX_SOCKET");
  app.add_flag("--no-tcp", no_tcp, "listen only on --unix-socket");
  app.add_option("--auth-token", token, "bearer token (env SIDECAR_TOKEN, then AUTH_TOKEN)");
  app.add_flag("--no-auth", options.no_auth, "allow a non-loopback bind without a token");
  for (size_t i = 0; i < enabled.size(); ++i) {
    const auto& service = mikcar::server::Services()[i];
    app.add_flag_callback(
        "--" + service.name, [&enabled, i] { enabled[i] = true; },
        "enable the " + service.name + " service (" + service.url_env + ")");
  }
  app.add_flag("--all", all, "enable every service compiled in");
  app.add_option("--data-dir", data_dir, "where embedded defaults keep their files")
      ->envname("MIKCAR_DATA_DIR");
  app.add_option("--max-body", max_body, "limit for JSON/KV bodies, e.g. 10MiB")
      ->envname("MIKCAR_MAX_BODY");
  app.add_option("--max-object-size", max_object_size, "limit for storage objects, e.g. 5GiB")
      ->envname("MIKCAR_MAX_OBJECT_SIZE");
  app.add_option("--presign-secret", settings.presign_secret,
                 "key for presigned storage URLs (default: <data-dir>/presign.key)")
      ->envname("MIKCAR_PRESIGN_SECRET");
  app.add_option("--timeout", timeout, "per-request deadline, e.g. 30s")->envname("MIKCAR_TIMEOUT");
  app.add_option("--threads", threads,
                 "I/O threads (0 = half the CPUs this process may use, at least 1; see the README)")
      ->envname("MIKCAR_THREADS");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off")
      ->envname("MIKCAR_LOG");
  app.add_option("--log-format", log_format, "text|json")->envname("MIKCAR_LOG_FORMAT");
  app.add_flag("--no-compression", no_compression, "never gzip responses");
  app.add_option("--cors-origins", cors, "allowed CORS origins: a,b or *")
      ->envname("MIKCAR_CORS_ORIGINS");
  app.add_flag("--metrics-public", options.metrics_public, "serve /metrics without the token");
  app.add_flag("--list-backends", list_backends,
               "print every service, scheme and whether it is compiled in");
  app.add_flag("-V,--version", version, "print version, git revision and compiled-in backends");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    Die(e.what() + std::string("; see mikcar --help"));
  }
  if (version) {
    std::puts(VersionText().c_str());
    return 0;
  }
  if (list_backends) {
    ListBackends();
    return 0;
  }
  mikcar::server::ConfigFile file;
  std::map<std::string, std::string> origins;
  if (!config_path.empty()) {
    auto read = mikcar::server::ReadConfigFile(config_path, service_names);
    if (!read) Die(read.error().message);
    file = std::move(*read);
    origins = ApplyConfig(app, file);
  }
  // An error about a setting names where its value came from: the file's line, or the variable.
  auto named = [&origins](const std::string& key, const std::string& env) {
    auto it = origins.find(key);
    return it == origins.end() ? env : it->second + ": " + key;
  };
  if (auto r = mikcar::ConfigureLogging(log_level, log_format, named("log_level", "MIKCAR_LOG"),
                                        named("log_format", "MIKCAR_LOG_FORMAT"));
      !r) {
    Die(r.error().message);
  }

  // Numbers and units.
  char* end = nullptr;
  unsigned long port_number = std::strtoul(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || port_number > 65535)
    Die(named("port", "PORT") + ": expected a number 0-65535; got '" + port + "'");
  options.port = static_cast<uint16_t>(port_number);
  unsigned long thread_count = std::strtoul(threads.c_str(), &end, 10);
  if (threads.empty() || *end != '\0' || thread_count > 1024)
    Die(named("threads", "MIKCAR_THREADS") + ": expected a number 0-1024; got '" + threads + "'");
  options.io_threads = static_cast<unsigned>(thread_count);
  options.host = host;
  options.tcp = !no_tcp;
  options.compression = !no_compression;
  auto body_limit = mikcar::ParseSize(max_body);
  if (!body_limit || *body_limit == 0)
    Die(named("max_body", "MIKCAR_MAX_BODY") + ": " +
        (body_limit ? std::string("must be > 0") : body_limit.error().message));
  options.max_body = *body_limit;
  auto object_limit = mikcar::ParseSize(max_object_size);
  if (!object_limit || *object_limit == 0)
    Die(named("max_object_size", "MIKCAR_MAX_OBJECT_SIZE") + ": " +
        (object_limit ? std::string("must be > 0") : object_limit.error().message));
  settings.max_object_size = *object_limit;
  auto deadline = mikcar::ParseDuration(timeout);
  if (!deadline || deadline->count() <= 0)
    Die(named("timeout", "MIKCAR_TIMEOUT") + ": " +
        (deadline ? std::string("must be > 0") : deadline.error().message));
  options.timeout = *deadline;
  if (!cors.empty()) {
    for (size_t start = 0; start <= cors.size();) {
      size_t comma = cors.find(',', start);
      std::string origin =
          cors.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!origin.empty()) options.cors_origins.push_back(origin);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  if (token.empty()) token = Env("SIDECAR_TOKEN");
  if (token.empty()) token = Env("AUTH_TOKEN");
  const bool token_from_file = token.empty();  // SIGHUP reloads it too
  if (token_from_file) token = file.auth_token;
  options.auth_token = token;
  options.tokens = file.tokens;

  // Services and their backends. The data directory holds the embedded defaults and the storage
  // presign key; it is created when one of them needs it.
  settings.data_dir = std::filesystem::absolute(data_dir).lexically_normal().string();
  mikcar::SidecarBuilder builder(options);
  size_t count = 0;
  for (size_t i = 0; i < enabled.size(); ++i) {
    const auto& spec = mikcar::server::Services()[i];
    bool in_file =
        std::find(file.services.begin(), file.services.end(), spec.name) != file.services.end();
    if (!enabled[i] && !in_file && !(all && spec.compiled_in)) continue;
    if (!spec.compiled_in) {
      Die((enabled[i] || all ? "--" + spec.name : file.services_where + ": services") + ": the " +
          spec.name + " service is not compiled into this build; rebuild with -D" +
          spec.cmake_option + "=ON");
    }
    std::string url = Env(spec.url_env.c_str());
    std::string url_name = spec.url_env + "=";  // where the URL came from, for errors
    if (url.empty() && file.urls.contains(spec.name)) {
      url = file.urls.at(spec.name).first;
      url_name = file.urls.at(spec.name).second + ": " + spec.name + ".url = ";
    }
    bool embedded = url.empty();
    if (embedded || (spec.name == "storage" && settings.presign_secret.empty())) {
      std::error_code ec;
      std::filesystem::create_directories(data_dir, ec);
      if (ec) {
        Die(named("data_dir", "MIKCAR_DATA_DIR") + ": cannot create '" + data_dir +
            "': " + ec.message());
      }
    }
    if (embedded) url = spec.default_url(settings.data_dir);
    auto service = spec.create(url, settings);
    if (!service) Die(url_name + mikcar::RedactUri(url) + ": " + service.error().message);
    if (auto ready = mikcar::CheckReady(**service, std::chrono::seconds(5)); !ready) {
      Die(url_name + mikcar::RedactUri(url) + ": backend unreachable: " + ready.error().message);
    }
    spdlog::info("{}: {} ({}{})", spec.name, mikcar::RedactUri(url), (*service)->backend_name(),
                 embedded ? ", embedded default; set " + spec.url_env + " to change" : "");
    builder.add(std::move(*service));
    ++count;
  }
  if (count == 0) {
    std::fprintf(stderr,
                 "mikcar: no service enabled; expected at least one of --storage --kv --sql "
                 "--queue --secrets "
                 "--email or --all (see mikcar --help)\n");
    return kExitUsage;
  }

  auto handle = builder.start();
  if (!handle) {
    // A token naming a service that is not mounted: the file is where to look.
    const std::string& message = handle.error().message;
    Die(!config_path.empty() && message.starts_with("token '") ? config_path + ": " + message
                                                               : message);
  }
  if (options.tcp) spdlog::info("listening on {}:{}", options.host, handle->port());
  if (!options.unix_socket.empty()) spdlog::info("listening on unix:{}", options.unix_socket);
  if (options.auth_token.empty() && options.tokens.empty())
    spdlog::warn("no auth token set: every client on this address can call mikcar");
  if (!options.tokens.empty()) spdlog::info("{} from {}", TokenNames(options.tokens), config_path);
  // SIGHUP reloads the tokens of the configuration file (and its auth_token, when neither a flag
  // nor the environment gave one); a file that does not read keeps the tokens in use.
  handle->wait([&] {
    if (config_path.empty()) {
      spdlog::info("received SIGHUP: no --config file, nothing to reload");
      return;
    }
    auto reread = mikcar::server::ReadConfigFile(config_path, service_names);
    if (!reread) {
      spdlog::error("SIGHUP: {}; keeping the tokens in use", reread.error().message);
      return;
    }
    if (auto set = handle->set_tokens(token_from_file ? reread->auth_token : token, reread->tokens);
        !set) {
      spdlog::error("SIGHUP: {}: {}; keeping the tokens in use", config_path, set.error().message);
      return;
    }
    spdlog::info("SIGHUP: reloaded {} from {}", TokenNames(reread->tokens), config_path);
  });
  spdlog::info("stopped");
  return 0;
}
