#include "mikcar/registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace mikcar {
namespace {

using ::testing::HasSubstr;

struct Thing {
  virtual ~Thing() = default;
  std::string from;
};

BackendRegistry<Thing> MakeRegistry() {
  BackendRegistry<Thing> r;
  EXPECT_TRUE(r.Register({"mem",
                          {"memory"},
                          "doc",
                          [](const Uri& u) -> Result<std::unique_ptr<Thing>> {
                            auto t = std::make_unique<Thing>();
                            t->from = u.scheme + "|" + u.host;
                            return t;
                          },
                          ""}));
  EXPECT_TRUE(r.Register({"far", {"far", "fars"}, "doc", {}, "MIKCAR_WITH_FAR"}));
  return r;
}

TEST(RegistryTest, CreatesTheBackendForTheScheme) {
  auto r = MakeRegistry();
  auto thing = r.Create("MEMORY://box");
  ASSERT_TRUE(thing) << thing.error().message;
  EXPECT_EQ((*thing)->from, "memory|box");
}

TEST(RegistryTest, UnknownSchemeListsTheSupportedOnes) {
  auto r = MakeRegistry();
  auto thing = r.Create("nope://x");
  ASSERT_FALSE(thing);
  EXPECT_EQ(thing.error().code, ErrorCode::kBadRequest);
  EXPECT_THAT(thing.error().message, HasSubstr("nope://"));
  EXPECT_THAT(thing.error().message, HasSubstr("memory://"));
  EXPECT_THAT(thing.error().message, ::testing::Not(HasSubstr("far://")));  // not usable here
}

TEST(RegistryTest, CompiledOutSchemeNamesTheCMakeOption) {
  auto r = MakeRegistry();
  auto thing = r.Create("fars://:hunter2@host");
  ASSERT_FALSE(thing);
  EXPECT_THAT(thing.error().message, HasSubstr("-DMIKCAR_WITH_FAR=ON"));
  EXPECT_THAT(thing.error().message, HasSubstr("fars://"));
  EXPECT_THAT(thing.error().message, ::testing::Not(HasSubstr("hunter2")));
}

TEST(RegistryTest, RejectsADuplicateScheme) {
  auto r = MakeRegistry();
  auto dup = r.Register({"again", {"x", "far"}, "doc", {}, ""});
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, ErrorCode::kConflict);
  EXPECT_EQ(r.entries().size(), 2u);
}

TEST(RegistryTest, MalformedUrlIsABadRequest) {
  auto r = MakeRegistry();
  auto thing = r.Create("no scheme here");
  ASSERT_FALSE(thing);
  EXPECT_EQ(thing.error().code, ErrorCode::kBadRequest);
}

}  // namespace
}  // namespace mikcar
