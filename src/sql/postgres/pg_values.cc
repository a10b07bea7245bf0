#include "sql/postgres/pg_values.h"

#include <optional>

#include "common/hex.h"
#include "common/json.h"
#include "sql/cells.h"

namespace mikcar::sql {
namespace {

enum : PgOid {
  kBool = 16,
  kBytea = 17,
  kChar = 18,
  kName = 19,
  kInt8 = 20,
  kInt2 = 21,
  kInt4 = 23,
  kText = 25,
  kOid = 26,
  kJson = 114,
  kXml = 142,
  kCidr = 650,
  kFloat4 = 700,
  kFloat8 = 701,
  kMoney = 790,
  kMacaddr = 829,
  kInet = 869,
  kBpchar = 1042,
  kVarchar = 1043,
  kDate = 1082,
  kTime = 1083,
  kTimestamp = 1114,
  kTimestamptz = 1184,
  kInterval = 1186,
  kTimetz = 1266,
  kBit = 1560,
  kVarbit = 1562,
  kNumeric = 1700,
  kUuid = 2950,
  kJsonb = 3802,
};

struct TypeInfo {
  PgOid oid;
  const char* name;
  PgOid element;  // for arrays: the element type; 0 otherwise
};

constexpr TypeInfo kTypes[] = {
    {kBool, "bool", 0},
    {kBytea, "bytea", 0},
    {kChar, "char", 0},
    {kName, "name", 0},
    {kInt8, "int8", 0},
    {kInt2, "int2", 0},
    {kInt4, "int4", 0},
    {kText, "text", 0},
    {kOid, "oid", 0},
    {kJson, "json", 0},
    {kXml, "xml", 0},
    {kCidr, "cidr", 0},
    {kFloat4, "float4", 0},
    {kFloat8, "float8", 0},
    {kMoney, "money", 0},
    {kMacaddr, "macaddr", 0},
    {kInet, "inet", 0},
    {kBpchar, "bpchar", 0},
    {kVarchar, "varchar", 0},
    {kDate, "date", 0},
    {kTime, "time", 0},
    {kTimestamp, "timestamp", 0},
    {kTimestamptz, "timestamptz", 0},
    {kInterval, "interval", 0},
    {kTimetz, "timetz", 0},
    {kBit, "bit", 0},
    {kVarbit, "varbit", 0},
    {kNumeric, "numeric", 0},
    {kUuid, "uuid", 0},
    {kJsonb, "jsonb", 0},
    // Arrays.
    {1000, "_bool", kBool},
    {1001, "_bytea", kBytea},
    {1002, "_char", kChar},
    {1003, "_name", kName},
    {1005, "_int2", kInt2},
    {1007, "_int4", kInt4},
    {1009, "_text", kText},
    {1014, "_bpchar", kBpchar},
    {1015, "_varchar", kVarchar},
    {1016, "_int8", kInt8},
    {1021, "_float4", kFloat4},
    {1022, "_float8", kFloat8},
    {1028, "_oid", kOid},
    {1041, "_inet", kInet},
    {651, "_cidr", kCidr},
    {791, "_money", kMoney},
    {1115, "_timestamp", kTimestamp},
    {1182, "_date", kDate},
    {1183, "_time", kTime},
    {1185, "_timestamptz", kTimestamptz},
    {1187, "_interval", kInterval},
    {1231, "_numeric", kNumeric},
    {2951, "_uuid", kUuid},
    {199, "_json", kJson},
    {3807, "_jsonb", kJsonb},
};

const TypeInfo* Find(PgOid oid) {
  for (const TypeInfo& t : kTypes)
    if (t.oid == oid) return &t;
  return nullptr;
}

// bytea output in hex format: "\x4142".
std::optional<std::string> DecodeBytea(std::string_view text) {
  if (!text.starts_with("\\x") || text.size() % 2 != 0) return std::nullopt;
  std::string out;
  for (size_t i = 2; i < text.size(); i += 2) {
    int hi = HexDigitValue(text[i]), lo = HexDigitValue(text[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

// "2024-01-02 03:04:05.12+00" → "2024-01-02T03:04:05.12+00:00" (UTC session).
std::string Timestamp(std::string_view text, bool with_zone) {
  std::string out(text);
  if (size_t space = out.find(' '); space != std::string::npos && space == 10) out[space] = 'T';
  if (with_zone) {
    // The offset is +HH, +HH:MM or +HH:MM:SS; normalise +HH to +HH:MM.
    size_t sign = out.find_last_of("+-");
    if (sign != std::string::npos && sign > 10 && out.size() - sign == 3) out += ":00";
  }
  return JsonQuote(out);
}

std::string Scalar(PgOid oid, std::string_view text);

// The array literal "{1,2,{3}}" / '{"a b",NULL}' as a JSON array of `element` cells.
class ArrayParser {
 public:
  ArrayParser(std::string_view text, PgOid element) : text_(text), element_(element) {}
  std::optional<std::string> Parse() {
    // Optional dimension decoration: "[1:2]={…}".
    if (!text_.empty() && text_[0] == '[') {
      size_t eq = text_.find('=');
      if (eq == std::string_view::npos) return std::nullopt;
      pos_ = eq + 1;
    }
    auto out = Value();
    if (!out || pos_ != text_.size()) return std::nullopt;
    return out;
  }

 private:
  std::optional<std::string> Value() {
    if (pos_ >= text_.size() || text_[pos_] != '{') return std::nullopt;
    ++pos_;
    std::string out = "[";
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      return out + "]";
    }
    for (bool first = true;; first = false) {
      if (!first) out += ',';
      if (pos_ >= text_.size()) return std::nullopt;
      if (text_[pos_] == '{') {
        auto nested = Value();
        if (!nested) return std::nullopt;
        out += *nested;
      } else if (text_[pos_] == '"') {
        std::string element;
        for (++pos_; pos_ < text_.size() && text_[pos_] != '"'; ++pos_) {
          if (text_[pos_] == '\\' && pos_ + 1 < text_.size()) ++pos_;
          element += text_[pos_];
        }
        if (pos_ >= text_.size()) return std::nullopt;
        ++pos_;
        out += Scalar(element_, element);
      } else {
        size_t end = text_.find_first_of(",}", pos_);
        if (end == std::string_view::npos) return std::nullopt;
        std::string_view element = text_.substr(pos_, end - pos_);
        pos_ = end;
        out += element == "NULL" ? "null" : Scalar(element_, element);
      }
      if (pos_ >= text_.size()) return std::nullopt;
      if (text_[pos_] == '}') {
        ++pos_;
        return out + "]";
      }
      if (text_[pos_] != ',') return std::nullopt;
      ++pos_;
    }
  }

  std::string_view text_;
  PgOid element_;
  size_t pos_ = 0;
};

std::string Scalar(PgOid oid, std::string_view text) {
  switch (oid) {
    case kBool:
      return text == "t" ? "true" : "false";
    case kInt2:
    case kInt4:
    case kOid:
      return std::string(text);
    case kInt8:
      return IntegerTextCell(text);
    case kFloat4:
    case kFloat8:
      if (text == "NaN" || text == "Infinity" || text == "-Infinity") return "null";
      return std::string(text);
    case kJson:
    case kJsonb:
      return std::string(text);
    case kBytea:
      if (auto bytes = DecodeBytea(text)) return BytesCell(*bytes);
      return JsonQuote(text);
    case kTimestamp:
      return Timestamp(text, false);
    case kTimestamptz:
      return Timestamp(text, true);
    default:
      if (const TypeInfo* t = Find(oid); t && t->element) {
        if (auto array = ArrayParser(text, t->element).Parse()) return *array;
      }
      return JsonQuote(text);  // numeric, text, uuid, date, time, interval, inet, money, enums…
  }
}

}  // namespace

std::string PgCell(PgOid oid, std::string_view text) { return Scalar(oid, text); }

std::string PgTypeName(PgOid oid) {
  const TypeInfo* t = Find(oid);
  return t ? t->name : "unknown";
}

}  // namespace mikcar::sql
