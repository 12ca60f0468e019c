// ParamSet: the session parameters a client expects or a server currently has, by canonical name.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace usher::pool {

// A handful of entries per connection: a flat vector beats a map here.
class ParamSet {
 public:
  struct Entry {
    std::string name;  // as first seen ("DateStyle"); lookups ignore case, as PostgreSQL does
    std::string value;
  };

  static bool sameName(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (lower(a[i]) != lower(b[i])) return false;
    return true;
  }

  const std::string* find(std::string_view name) const {
    for (const auto& e : items_)
      if (sameName(e.name, name)) return &e.value;
    return nullptr;
  }
  // Returns true when the stored value changed.
  bool set(std::string_view name, std::string_view value) {
    for (auto& e : items_)
      if (sameName(e.name, name)) {
        if (e.value == value) return false;
        e.value.assign(value);
        return true;
      }
    items_.push_back({std::string(name), std::string(value)});
    return true;
  }
  void erase(std::string_view name) {
    for (auto it = items_.begin(); it != items_.end(); ++it)
      if (sameName(it->name, name)) {
        items_.erase(it);
        return;
      }
  }
  void clear() { items_.clear(); }
  const std::vector<Entry>& entries() const { return items_; }

 private:
  static char lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }
  std::vector<Entry> items_;
};

// Parameters usher keeps in step for every client: PgBouncer's list plus track_extra_parameters.
bool isTrackedParam(std::string_view name, const std::vector<std::string>& trackExtra);

}  // namespace usher::pool
