// cxx.cc — C++ through libstdc++: new/delete in all their forms, and the std containers.
//
// libstdc++'s operator new calls malloc and operator delete calls free, so everything here
// reaches the preloaded allocator: plain, array, nothrow, sized and over-aligned new, the
// containers' growth and rehashing, strings, shared_ptr control blocks, exceptions (their
// objects come from __cxa_allocate_exception -> malloc) and containers handed between
// threads.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <new>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);       \
            std::exit(1);                                                              \
        }                                                                              \
    } while (0)

// Stores here keep the compiler from eliding a new/delete pair.
static void *volatile sink;

static size_t opaque(size_t x) {
    volatile size_t v = x;
    return v;
}

struct alignas(64) CacheLine {
    unsigned char bytes[64];
};

struct alignas(4096) Page {
    unsigned char bytes[4096];
};

static void test_new_delete() {
    int *one = new int(42);
    CHECK(*one == 42);
    delete one;
    auto *arr = new std::uint64_t[opaque(100000)];
    for (size_t i = 0; i < 100000; i++) arr[i] = i * 3;
    CHECK(arr[99999] == 299997);
    delete[] arr;
    // Over-aligned new goes through aligned_alloc / posix_memalign-style paths.
    for (int i = 0; i < 100; i++) {
        auto *c = new CacheLine[opaque(3)];
        CHECK(reinterpret_cast<std::uintptr_t>(c) % 64 == 0);
        std::memset(c, i, sizeof(CacheLine) * 3);
        delete[] c;
    }
    auto *pg = new Page;
    CHECK(reinterpret_cast<std::uintptr_t>(pg) % 4096 == 0);
    delete pg;
    void *raw = ::operator new(opaque(1000), std::align_val_t(256));
    CHECK(reinterpret_cast<std::uintptr_t>(raw) % 256 == 0);
    ::operator delete(raw, std::align_val_t(256));
    void *sized = ::operator new(opaque(77));
    ::operator delete(sized, 77);
    // Impossible sizes: nothrow gives nullptr, plain new throws std::bad_alloc.
    char *none = new (std::nothrow) char[opaque(SIZE_MAX / 2)];
    sink = none;
    CHECK(none == nullptr);
    bool threw = false;
    try {
        auto *huge = new char[opaque(SIZE_MAX / 2)];
        sink = huge;
        delete[] huge;
    } catch (const std::bad_alloc &) {
        threw = true;
    }
    CHECK(threw);
}

static void test_containers() {
    std::vector<std::string> words;
    for (int i = 0; i < 100000; i++) words.push_back("word-" + std::to_string(i * 7919 % 100003));
    std::sort(words.begin(), words.end());
    CHECK(std::is_sorted(words.begin(), words.end()));
    words.erase(std::unique(words.begin(), words.end()), words.end());
    words.shrink_to_fit();

    std::map<std::string, int> m;
    for (size_t i = 0; i < words.size(); i++) m[words[i]] = static_cast<int>(i);
    CHECK(m.size() == words.size());
    std::unordered_map<int, std::vector<int>> um;
    for (int i = 0; i < 200000; i++) um[i % 5003].push_back(i);
    long total = 0;
    for (auto &kv : um) total += static_cast<long>(kv.second.size());
    CHECK(total == 200000);
    um.clear();
    um.rehash(0);

    std::set<long> s;
    for (long i = 0; i < 50000; i++) s.insert(i * i % 65537);
    std::list<std::string> l(words.begin(), words.begin() + 1000);
    l.sort();
    std::deque<int> d;
    for (int i = 0; i < 100000; i++) (i % 2 ? d.push_back(i) : d.push_front(i));
    CHECK(d.size() == 100000);

    std::string big;
    for (int i = 0; i < 100000; i++) big += static_cast<char>('a' + i % 26);
    CHECK(big.size() == 100000 && big[25] == 'z');

    std::vector<std::shared_ptr<std::vector<int>>> shared;
    for (int i = 0; i < 1000; i++) shared.push_back(std::make_shared<std::vector<int>>(i, i));
    auto copy = shared;
    shared.clear();
    long sum = 0;
    for (auto &p : copy) sum += std::accumulate(p->begin(), p->end(), 0L);
    CHECK(sum > 0);
}

static void test_exceptions() {
    int caught = 0;
    for (int i = 0; i < 10000; i++) {
        try {
            throw std::runtime_error("error number " + std::to_string(i));
        } catch (const std::runtime_error &e) {
            caught += std::strncmp(e.what(), "error number", 12) == 0;
        }
    }
    CHECK(caught == 10000);
}

// Containers built in one thread, destroyed in another.
static void test_threads() {
    std::vector<std::unique_ptr<std::map<int, std::string>>> made(8);
    std::vector<std::thread> makers;
    for (int t = 0; t < 8; t++)
        makers.emplace_back([t, &made] {
            auto m = std::make_unique<std::map<int, std::string>>();
            for (int i = 0; i < 20000; i++) (*m)[i] = std::string(static_cast<size_t>(i % 64), static_cast<char>('A' + t));
            made[static_cast<size_t>(t)] = std::move(m);
        });
    for (auto &th : makers) th.join();
    std::vector<std::thread> destroyers;
    for (int t = 0; t < 8; t++)
        destroyers.emplace_back([t, &made] {
            auto m = std::move(made[static_cast<size_t>((t + 3) % 8)]);
            CHECK(m->size() == 20000);
            m.reset();
        });
    for (auto &th : destroyers) th.join();
}

int main() {
    test_new_delete();
    test_containers();
    test_exceptions();
    test_threads();
    std::printf("OK cxx\n");
    return 0;
}
