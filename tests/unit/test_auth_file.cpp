// auth_file (userlist.txt) parsing: quoting, comments, secrets and error messages.
#include <doctest/doctest.h>

#include <string>

#include "usher/auth/auth_file.h"

using namespace usher::auth;

TEST_SUITE("auth") {
  TEST_CASE("auth file: users, quotes, comments and secret kinds") {
    constexpr std::string_view text =
        "; comment\n"
        "  # another comment\n"
        "\n"
        "   \t\n"
        "\"alice\" \"md520eb1b22a92b5c573dc1eb4331fc49ee\"\n"
        "  \"say \"\"hi\"\"\"\t \"pa\"\"ss\" \"extra field\" trailing\r\n"
        "\"empty\" \"\"\n"
        "\"alice\" \"replaced\"\n"
        "\"last\" \"no newline\"";
    auto users = parseAuthFile(text, "userlist.txt");
    REQUIRE_MESSAGE(users.has_value(), users.error().message);
    REQUIRE(users->size() == 4);

    REQUIRE(users->count("alice"));
    CHECK(users->at("alice").kind() == SecretKind::Plain);  // later line wins
    CHECK(users->at("alice").text() == "replaced");

    auto quoted = users->find("say \"hi\"");
    REQUIRE(quoted != users->end());
    CHECK(quoted->second.kind() == SecretKind::Plain);
    CHECK(quoted->second.text() == "pa\"ss");

    REQUIRE(users->count("empty"));
    CHECK(users->at("empty").kind() == SecretKind::Plain);
    CHECK(users->at("empty").text().empty());
    CHECK(users->at("last").text() == "no newline");
  }

  TEST_CASE("auth file: bad lines name path and line, never the password") {
    struct Case {
      std::string_view text;
      std::string_view expected;
    };
    const Case cases[] = {
        {"\"a\" \"s3cr3t\"\nalice s3cr3t\n",
         "users.txt:2: invalid line in auth file: expected \"user\" \"password\""},
        {"\"alice\"\n", "users.txt:1: invalid line in auth file: expected \"user\" \"password\""},
        {"\"alice\" \"s3cr3t\n",
         "users.txt:1: invalid line in auth file: expected \"user\" \"password\""},
        {"\"alice\"\"s3cr3t\"\n",
         "users.txt:1: invalid line in auth file: expected \"user\" \"password\""},
        {"\n\n\"alice\" s3cr3t\n",
         "users.txt:3: invalid line in auth file: expected \"user\" \"password\""},
        {"\"\" \"s3cr3t\"\n", "users.txt:1: empty user name in auth file"},
    };
    for (const Case& c : cases) {
      CAPTURE(c.text);
      auto r = parseAuthFile(c.text, "users.txt");
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().message == c.expected);
      CHECK(r.error().message.find("s3cr3t") == std::string::npos);
    }
  }

  TEST_CASE("auth file: a malformed SCRAM secret names the line and the user") {
    auto r = parseAuthFile(
        "\"ok\" \"pw\"\n\"carol\" \"SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy\"\n", "u.txt");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message.starts_with("u.txt:2: "));
    CHECK(r.error().message.find("\"carol\"") != std::string::npos);
    CHECK(r.error().message.find("SCRAM") != std::string::npos);
    CHECK(r.error().message.find("c3RvcmVk") == std::string::npos);
  }

  TEST_CASE("auth file: loading from disk") {
    auto users = loadAuthFile(std::string(USHER_TEST_DATA) + "/auth_userlist.txt");
    REQUIRE_MESSAGE(users.has_value(), users.error().message);
    CHECK(users->size() == 3);
    CHECK(users->at("alice").kind() == SecretKind::Md5);
    CHECK(users->at("x").kind() == SecretKind::Scram);
    CHECK(users->at("x").scram().iterations == 4096);
    CHECK(users->at("bob").text() == "pa\"ss word");

    auto missing = loadAuthFile("/nonexistent/usher/userlist.txt");
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().message ==
          "cannot read auth file /nonexistent/usher/userlist.txt: No such file or directory");
    auto dir = loadAuthFile(USHER_TEST_DATA);
    REQUIRE_FALSE(dir.has_value());
    CHECK(dir.error().message.find("Is a directory") != std::string::npos);
  }
}
