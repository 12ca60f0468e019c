// Session parameter comparison and quoting.
#include <doctest/doctest.h>

#include "usher/protocol/params.h"

using namespace usher::protocol;

TEST_SUITE("protocol") {
  TEST_CASE("params: encoding names follow PostgreSQL's aliases") {
    CHECK(paramValuesEqual("client_encoding", "utf8", "UTF-8"));
    CHECK(paramValuesEqual("client_encoding", "UTF8", "unicode"));
    CHECK(paramValuesEqual("Client_Encoding", "utf_8", "Unicode"));
    CHECK(paramValuesEqual("client_encoding", "latin1", "ISO-8859-1"));
    CHECK(paramValuesEqual("client_encoding", "LATIN9", "iso_8859_15"));
    CHECK(paramValuesEqual("client_encoding", "WIN1252", "windows-1252"));
    CHECK(paramValuesEqual("client_encoding", "SQL_ASCII", "sqlascii"));
    CHECK(paramValuesEqual("client_encoding", "KOI8", "koi8-r"));
    CHECK(paramValuesEqual("server_encoding", "EUC_JP", "euc-jp"));
    CHECK_FALSE(paramValuesEqual("client_encoding", "utf8", "latin1"));
    CHECK_FALSE(paramValuesEqual("client_encoding", "latin1", "latin10"));
    CHECK_FALSE(paramValuesEqual("client_encoding", "win1251", "win1252"));
  }

  TEST_CASE("params: lists and free text") {
    CHECK(paramValuesEqual("DateStyle", "ISO, MDY", "iso,mdy"));
    CHECK(paramValuesEqual("datestyle", "  ISO ,MDY ", "ISO, MDY"));
    CHECK_FALSE(paramValuesEqual("DateStyle", "ISO, MDY", "ISO, DMY"));
    CHECK(paramValuesEqual("TimeZone", "UTC", "utc"));
    CHECK_FALSE(paramValuesEqual("TimeZone", "Europe/Paris", "Europe/Berlin"));
    CHECK_FALSE(paramValuesEqual("application_name", "my app", "myapp"));
  }

  TEST_CASE("params: booleans") {
    CHECK(paramValuesEqual("standard_conforming_strings", "on", "true"));
    CHECK(paramValuesEqual("standard_conforming_strings", "ON", "1"));
    CHECK(paramValuesEqual("standard_conforming_strings", "off", "f"));
    CHECK_FALSE(paramValuesEqual("standard_conforming_strings", "on", "off"));
    CHECK(paramValuesEqual("enable_seqscan", "yes", "on"));
    CHECK_FALSE(paramValuesEqual("enable_seqscan", "no", "on"));
    CHECK_FALSE(paramValuesEqual("application_name", "t", "true"));
  }

  TEST_CASE("params: names and tracking") {
    CHECK(canonicalParamName("DateStyle") == "datestyle");
    CHECK(canonicalParamName("TimeZone") == "timezone");
    CHECK(isDefaultTrackedParam("client_encoding"));
    CHECK(isDefaultTrackedParam("datestyle"));
    CHECK(isDefaultTrackedParam("standard_conforming_strings"));
    CHECK(isDefaultTrackedParam("application_name"));
    CHECK_FALSE(isDefaultTrackedParam("search_path"));
    CHECK(isDefaultTrackedParam("DateStyle"));  // any case, as PostgreSQL spells it
    CHECK(isDefaultTrackedParam("TimeZone"));
    CHECK_FALSE(isDefaultTrackedParam("DateStyleX"));
  }

  TEST_CASE("params: quoteLiteral") {
    CHECK(quoteLiteral("plain") == "'plain'");
    CHECK(quoteLiteral("it's") == "'it''s'");
    CHECK(quoteLiteral("") == "''");
    CHECK(quoteLiteral(R"(C:\dir)") == R"(E'C:\\dir')");
    CHECK(quoteLiteral(R"(a'\b)") == R"(E'a''\\b')");
  }
}
