// The three script forms of SPEC §5.3, recognised without a JavaScript engine.
//
// JavaScriptCore's C API has no module loader, so a script with `export default` (a module) is
// rewritten into a function body that evaluates the module and returns its default export; lines
// stay where they were, so an error's line is the line in the script as sent. A script without
// `export` is left as is: the runner compiles it as a program (whose completion value is the
// result: the bare-expression form) and, if that fails to parse, as a function body (the
// top-level `return` form). Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "mikcar/error.h"

namespace mikcar::sql::script {

enum class ScriptForm {
  kModule,  // `export default …`: `body` is a function body returning the default export
  kScript,  // statements or an expression: `body` is the source unchanged
};

struct PreparedSource {
  ScriptForm form = ScriptForm::kScript;
  std::string body;
};

// The name the rewrite binds an anonymous default export to.
inline constexpr std::string_view kDefaultBinding = "__mikcar_default";

// `source` classified and, for a module, rewritten. SCRIPT_ERROR with a "line" field for an
// `import` declaration, an `export` other than `export default`, or a second `export default`.
Result<PreparedSource> PrepareSource(std::string_view source);

// A keyword `export` or `import` at the top level of `source` (outside strings, comments,
// template literals, regular expressions and any braces), as found by the scanner.
struct TopLevelKeyword {
  size_t offset = 0;
  size_t line = 1;  // 1-based
  std::string_view word;
};
std::vector<TopLevelKeyword> FindTopLevelKeywords(std::string_view source);

}  // namespace mikcar::sql::script
