// IntrusiveList: a doubly linked list threaded through a ListNode member, so moving a session
// between state lists (PgBouncer's "the state is the list you are on") costs no allocation.
#pragma once

#include <cstddef>

namespace usher {

struct ListNode {
  ListNode* prev = nullptr;
  ListNode* next = nullptr;
  void* owner = nullptr;       // the object this node is embedded in (set on insertion)
  const void* list = nullptr;  // the list it is on, so remove() from another list is a no-op
  bool linked() const { return prev != nullptr; }
};

// T must have a `ListNode Member` field; an object is on at most one list per node member.
template <class T, ListNode T::*Member>
class IntrusiveList {
 public:
  IntrusiveList() { head_.prev = head_.next = &head_; }
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;

  bool empty() const { return head_.next == &head_; }
  size_t size() const { return size_; }

  void pushBack(T& item) { insertBefore(&head_, node(item)); }
  void pushFront(T& item) { insertBefore(head_.next, node(item)); }
  static bool isLinked(const T& item) { return (item.*Member).linked(); }
  T* front() { return empty() ? nullptr : owner(head_.next); }
  T* back() { return empty() ? nullptr : owner(head_.prev); }
  bool contains(const T& item) const { return (item.*Member).list == this; }
  // Removes `item` if it is on this list; does nothing otherwise.
  void remove(T& item) {
    ListNode* n = &(item.*Member);
    if (n->list != this) return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = nullptr;
    n->list = nullptr;
    --size_;
  }
  T* popFront() {
    T* t = front();
    if (t) remove(*t);
    return t;
  }
  T* popBack() {
    T* t = back();
    if (t) remove(*t);
    return t;
  }

  // Iteration that tolerates removal of the current element: `for (T* t = l.first(); t; t = next)`
  // with `next = l.next(*t)` taken before acting on t.
  T* first() { return front(); }
  T* next(T& item) {
    ListNode* n = (item.*Member).next;
    return n == &head_ ? nullptr : owner(n);
  }

  template <class F>
  void forEach(F&& f) {
    for (T* t = first(); t;) {
      T* nx = next(*t);
      f(*t);
      t = nx;
    }
  }

 private:
  static T* owner(ListNode* n) { return static_cast<T*>(n->owner); }
  static ListNode* node(T& item) {
    ListNode* n = &(item.*Member);
    n->owner = &item;
    return n;
  }
  void insertBefore(ListNode* pos, ListNode* n) {
    n->list = this;
    n->next = pos;
    n->prev = pos->prev;
    pos->prev->next = n;
    pos->prev = n;
    ++size_;
  }
  ListNode head_;
  size_t size_ = 0;
};

}  // namespace usher
