#include "sql/script/script_forms.h"

#include <algorithm>
#include <array>

namespace mikcar::sql::script {
namespace {

bool IdentStart(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || c == '_' || c == '$' || u >= 0x80 ||
         c == '\\';
}
bool IdentPart(char c) { return IdentStart(c) || (c >= '0' && c <= '9'); }
bool Space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

// Words after which a `/` starts a regular expression rather than a division.
bool RegexFollows(std::string_view word) {
  static constexpr std::array<std::string_view, 14> kWords = {
      "return", "typeof", "instanceof", "in", "of",   "new",   "delete",
      "void",   "throw",  "case",       "do", "else", "yield", "await"};
  return std::find(kWords.begin(), kWords.end(), word) != kWords.end();
}

// Offset after the whitespace and comments at `i`; counts newlines into `line` if given.
size_t SkipTrivia(std::string_view s, size_t i, size_t* line = nullptr) {
  while (i < s.size()) {
    if (Space(s[i])) {
      if (s[i] == '\n' && line) ++*line;
      ++i;
    } else if (s.compare(i, 2, "//") == 0) {
      while (i < s.size() && s[i] != '\n') ++i;
    } else if (s.compare(i, 2, "/*") == 0) {
      size_t end = s.find("*/", i + 2);
      end = end == std::string_view::npos ? s.size() : end + 2;
      if (line) *line += std::count(s.begin() + i, s.begin() + end, '\n');
      i = end;
    } else {
      break;
    }
  }
  return i;
}

size_t IdentEnd(std::string_view s, size_t i) {
  while (i < s.size() && IdentPart(s[i])) ++i;
  return i;
}

std::string_view WordAt(std::string_view s, size_t i) {
  if (i >= s.size() || !IdentStart(s[i])) return {};
  return s.substr(i, IdentEnd(s, i) - i);
}

Error FormError(std::string message, size_t line) {
  return Error{ErrorCode::kScriptError, std::move(message), {{"line", std::to_string(line)}}};
}

}  // namespace

std::vector<TopLevelKeyword> FindTopLevelKeywords(std::string_view s) {
  std::vector<TopLevelKeyword> found;
  size_t line = 1;
  size_t i = 0;
  int depth = 0;               // open (, [ and { in code, template `${` included
  std::vector<int> templates;  // the depth at which each open `${ … }` began
  bool regex_allowed = true;   // a `/` here starts a regular expression
  char previous = 0;           // the last significant character
  bool in_template = false;

  // Scans template characters from `i` up to the closing backtick or a `${`.
  auto scan_template = [&] {
    while (i < s.size()) {
      char c = s[i];
      if (c == '\\') {
        if (i + 1 < s.size() && s[i + 1] == '\n') ++line;
        i += 2;
      } else if (c == '`') {
        ++i;
        in_template = false;
        regex_allowed = false;
        previous = '`';
        return;
      } else if (c == '$' && i + 1 < s.size() && s[i + 1] == '{') {
        i += 2;
        templates.push_back(depth);
        ++depth;
        in_template = false;
        regex_allowed = true;
        previous = '{';
        return;
      } else {
        if (c == '\n') ++line;
        ++i;
      }
    }
  };

  while (i < s.size()) {
    if (in_template) {
      scan_template();
      continue;
    }
    size_t after = SkipTrivia(s, i, &line);
    if (after != i) {
      i = after;
      continue;
    }
    char c = s[i];
    if (c == '\'' || c == '"') {
      ++i;
      while (i < s.size() && s[i] != c && s[i] != '\n') {
        if (s[i] == '\\' && i + 1 < s.size()) {
          if (s[i + 1] == '\n') ++line;
          ++i;
        }
        ++i;
      }
      if (i < s.size() && s[i] == c) ++i;
      regex_allowed = false;
      previous = c;
    } else if (c == '`') {
      ++i;
      in_template = true;
    } else if (c == '/' && regex_allowed) {
      ++i;
      bool in_class = false;
      while (i < s.size() && s[i] != '\n') {
        if (s[i] == '\\') {
          i += 2;
          continue;
        }
        if (s[i] == '[') in_class = true;
        if (s[i] == ']') in_class = false;
        if (s[i] == '/' && !in_class) break;
        ++i;
      }
      if (i < s.size() && s[i] == '/') i = IdentEnd(s, i + 1);
      regex_allowed = false;
      previous = '/';
    } else if (IdentStart(c)) {
      size_t end = IdentEnd(s, i);
      std::string_view word = s.substr(i, end - i);
      if (depth == 0 && previous != '.' && (word == "export" || word == "import"))
        found.push_back({i, line, word});
      regex_allowed = RegexFollows(word);
      previous = 'a';
      i = end;
    } else if (c >= '0' && c <= '9') {
      i = IdentEnd(s, i);
      regex_allowed = false;
      previous = '0';
    } else {
      ++i;
      if (c == '(' || c == '[' || c == '{') {
        ++depth;
      } else if (c == ')' || c == ']' || c == '}') {
        if (depth > 0) --depth;
        if (c == '}' && !templates.empty() && depth == templates.back()) {
          templates.pop_back();
          in_template = true;
          continue;
        }
      }
      regex_allowed = c != ')' && c != ']';
      previous = c;
    }
  }
  return found;
}

Result<PreparedSource> PrepareSource(std::string_view s) {
  const TopLevelKeyword* default_export = nullptr;
  auto keywords = FindTopLevelKeywords(s);
  for (const TopLevelKeyword& k : keywords) {
    size_t next = SkipTrivia(s, k.offset + k.word.size());
    if (k.word == "import") {
      // import(…) and import.meta are expressions: the engine refuses them itself.
      if (next < s.size() && (s[next] == '(' || s[next] == '.')) continue;
      return Fail(
          FormError("import declarations are not available in a script: everything it can "
                    "use is in its globals (input, sql, console)",
                    k.line));
    }
    if (WordAt(s, next) != "default") {
      return Fail(FormError(
          "only `export default` is supported (a function, an arrow function or a value)", k.line));
    }
    if (default_export)
      return Fail(FormError("a script may have only one `export default`", k.line));
    default_export = &k;
  }
  if (!default_export) return PreparedSource{ScriptForm::kScript, std::string(s)};

  // `export default` → nothing for a declaration (named after the default binding if it has no
  // name), or `var __mikcar_default =` before an expression. The newlines between `export` and
  // the declaration are kept, so every line stays where it was.
  size_t start = default_export->offset;
  size_t keyword_end = SkipTrivia(s, start + 6);
  keyword_end += 7;  // "default"
  size_t next = SkipTrivia(s, keyword_end);
  std::string kept_newlines(std::count(s.begin() + start, s.begin() + next, '\n'), '\n');

  std::string_view word = WordAt(s, next);
  size_t declaration_end = std::string_view::npos;  // after `function`, `function*` or `class`
  if (word == "async") {
    size_t after = SkipTrivia(s, next + word.size());
    bool same_line = std::find(s.begin() + next, s.begin() + after, '\n') == s.begin() + after;
    if (same_line && WordAt(s, after) == "function") declaration_end = after + 8;
  } else if (word == "function" || word == "class") {
    declaration_end = next + word.size();
  }

  PreparedSource out{ScriptForm::kModule, {}};
  std::string name(kDefaultBinding);
  if (declaration_end == std::string_view::npos) {
    out.body.append(s.substr(0, start));
    out.body.append("var ").append(kDefaultBinding).append(" =").append(kept_newlines);
    out.body.push_back(' ');
    out.body.append(s.substr(next));
  } else {
    size_t after = SkipTrivia(s, declaration_end);
    if (word != "class" && after < s.size() && s[after] == '*') {
      declaration_end = after + 1;
      after = SkipTrivia(s, declaration_end);
    }
    std::string_view own = WordAt(s, after);
    bool named = !own.empty() && own != "extends";
    out.body.append(s.substr(0, start)).append(kept_newlines);
    out.body.append(s.substr(next, declaration_end - next));
    if (named) {
      name = std::string(own);
    } else {
      out.body.append(" ").append(kDefaultBinding);
    }
    out.body.append(s.substr(declaration_end));
  }
  out.body.append("\n;return ").append(name).append(";");
  return out;
}

}  // namespace mikcar::sql::script
