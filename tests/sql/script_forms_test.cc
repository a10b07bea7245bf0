#include "sql/script/script_forms.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace mikcar::sql::script {
namespace {

using ::testing::HasSubstr;

size_t Lines(std::string_view s) { return std::count(s.begin(), s.end(), '\n'); }

std::vector<std::string> SplitLines(const std::string& s) {
  std::vector<std::string> lines(1);
  for (char c : s) {
    if (c == '\n') {
      lines.emplace_back();
    } else {
      lines.back() += c;
    }
  }
  return lines;
}

// The prepared body of `source`, which must be the module form.
std::string Module(std::string_view source) {
  auto prepared = PrepareSource(source);
  EXPECT_TRUE(prepared.has_value()) << (prepared ? "" : prepared.error().message);
  if (!prepared) return "";
  EXPECT_EQ(prepared->form, ScriptForm::kModule) << source;
  return prepared->body;
}

std::string LineOf(const Error& error) {
  for (const auto& [name, value] : error.fields)
    if (name == "line") return value;
  return "";
}

TEST(ScriptFormsTest, ScriptsWithoutExportAreLeftAlone) {
  for (std::string_view source : {
           "sql.query('SELECT 1 AS x')",
           "const a = input.a;\nreturn a + 1;",
           "// export default function () {}\n1 + 1",
           "/* export default 1 */ 2",
           "'export default 3'",
           "\"export default 3\"",
           "`export default ${1}`",
           "obj.export; obj.import",
           "const o = {export: 1, import: 2}; o.export",
           "function f() { export default 1 }",  // not top level: the engine reports it
           "x = /export default/.test(s)",
           "x = a / export_default / b",
       }) {
    auto prepared = PrepareSource(source);
    ASSERT_TRUE(prepared.has_value()) << source << ": " << prepared.error().message;
    EXPECT_EQ(prepared->form, ScriptForm::kScript) << source;
    EXPECT_EQ(prepared->body, source);
  }
}

TEST(ScriptFormsTest, AnonymousFunctionGetsTheDefaultBinding) {
  EXPECT_EQ(Module("export default function (input) { return input.a }"),
            "function __mikcar_default (input) { return input.a }\n;return __mikcar_default;");
}

TEST(ScriptFormsTest, AsyncAndGeneratorFunctions) {
  EXPECT_EQ(Module("export default async function(input) {}"),
            "async function __mikcar_default(input) {}\n;return __mikcar_default;");
  EXPECT_EQ(Module("export default function* () {}"),
            "function* __mikcar_default () {}\n;return __mikcar_default;");
}

TEST(ScriptFormsTest, NamedDeclarationsKeepTheirName) {
  EXPECT_EQ(Module("export default async function transfer(input) {}"),
            "async function transfer(input) {}\n;return transfer;");
  EXPECT_EQ(Module("export default class Handler {}"), "class Handler {}\n;return Handler;");
  EXPECT_EQ(Module("export default class extends Base {}"),
            "class __mikcar_default extends Base {}\n;return __mikcar_default;");
}

TEST(ScriptFormsTest, ExpressionsAreAssigned) {
  EXPECT_EQ(Module("export default (input) => input.a * 2"),
            "var __mikcar_default = (input) => input.a * 2\n;return __mikcar_default;");
  EXPECT_EQ(Module("export default async ({a}) => a;"),
            "var __mikcar_default = async ({a}) => a;\n;return __mikcar_default;");
  EXPECT_EQ(Module("export default { a: 1 }"),
            "var __mikcar_default = { a: 1 }\n;return __mikcar_default;");
}

TEST(ScriptFormsTest, LeadingCommentsAndCodeBeforeAndAfter) {
  std::string source =
      "// transfer funds\n/* between\n accounts */\nconst RATE = 2;\n"
      "export default function (input) {\n  return helper(input) * RATE;\n}\n"
      "function helper(x) { return x.a; }\nconst AFTER = `${'}'}` + \"export default\";\n";
  std::string body = Module(source);
  EXPECT_THAT(body, HasSubstr("function __mikcar_default (input) {"));
  EXPECT_THAT(body, HasSubstr("const AFTER = `${'}'}` + \"export default\";"));
  // Every line of the source is still on its line: the only line added is the final return.
  EXPECT_EQ(Lines(body), Lines(source) + 1);
  std::vector<std::string> in = SplitLines(source), out = SplitLines(body);
  ASSERT_GE(out.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i].find("export default") == std::string::npos) {
      EXPECT_EQ(out[i], in[i]) << i;
    }
  }
}

TEST(ScriptFormsTest, NewlinesInsideExportDefaultAreKept) {
  std::string body = Module("export\ndefault\n\nfunction (input) {\n throw 1\n}");
  EXPECT_EQ(body,
            "\n\n\nfunction __mikcar_default (input) {\n throw 1\n}\n;return __mikcar_default;");
  body = Module("export /* c */ default\n(input) => 1");
  EXPECT_EQ(body, "var __mikcar_default =\n (input) => 1\n;return __mikcar_default;");
}

TEST(ScriptFormsTest, TemplatesWithNestedBracesAndRegexes) {
  std::string source =
      "const t = `a ${ {b: `c ${ '`' }`}.b } d`;\nconst r = /[/`']/g;\nexport default () => t";
  std::string body = Module(source);
  EXPECT_EQ(body.substr(0, body.find("var ")), source.substr(0, source.find("export")));
}

TEST(ScriptFormsTest, ImportAndOtherExportsAreRefusedWithTheirLine) {
  auto imported = PrepareSource("// deps\nimport x from 'y'\nexport default 1");
  ASSERT_FALSE(imported.has_value());
  EXPECT_EQ(imported.error().code, ErrorCode::kScriptError);
  EXPECT_THAT(imported.error().message, HasSubstr("import"));
  EXPECT_EQ(LineOf(imported.error()), "2");

  auto named = PrepareSource("\n\n\nexport const a = 1");
  ASSERT_FALSE(named.has_value());
  EXPECT_THAT(named.error().message, HasSubstr("export default"));
  EXPECT_EQ(LineOf(named.error()), "4");

  auto twice = PrepareSource("export default 1\nexport default 2");
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(LineOf(twice.error()), "2");
}

TEST(ScriptFormsTest, DynamicImportIsLeftToTheEngine) {
  auto prepared = PrepareSource("import('x')");
  ASSERT_TRUE(prepared.has_value());
  EXPECT_EQ(prepared->form, ScriptForm::kScript);
}

TEST(ScriptFormsTest, ScannerReportsLinesAcrossStringsAndComments) {
  auto found = FindTopLevelKeywords("'a\\\nb'\n/* x\ny */\n`\n${1}\n`\nexport default 1");
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].word, "export");
  EXPECT_EQ(found[0].line, 8u);
}

TEST(ScriptFormsTest, UnterminatedInputNeverCrashes) {
  for (std::string_view source : {"`${", "'abc", "/* x", "export", "export default", "/[", "`${`",
                                  "export default async", "export default function"}) {
    (void)PrepareSource(source);
  }
}

}  // namespace
}  // namespace mikcar::sql::script
