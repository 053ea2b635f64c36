// tls_cxx.cc — C++ thread_local objects whose destructors free (and allocate) memory.
//
// libstdc++ registers thread_local destructors with __cxa_thread_atexit_impl; glibc runs
// them at thread exit, before the pthread key destructors, and for the main thread at
// exit(). They free std::string, std::vector and std::map storage, and one of them creates
// a new thread_local while the thread is already exiting. Threads are std::thread.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
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

static std::atomic<long> destroyed{0};
static std::atomic<long> late_destroyed{0};

struct Late {
    std::vector<std::string> words;
    Late() {
        for (int i = 0; i < 50; i++) words.push_back("late word number " + std::to_string(i));
    }
    ~Late() {
        CHECK(words.size() == 50 && words[49] == "late word number 49");
        late_destroyed++;
    }
};

struct Holder {
    std::string name;
    std::vector<std::unique_ptr<int[]>> arrays;
    std::map<int, std::string> table;
    Holder() : name(200, 'x') {}
    ~Holder() {
        // Check everything is intact, then let the members free themselves; also allocate
        // afresh during destruction, and touch a thread_local that did not exist yet.
        for (auto &kv : table) CHECK(kv.second == std::to_string(kv.first * 3));
        std::vector<double> scratch(10000, 1.5);
        CHECK(scratch[9999] == 1.5);
        static thread_local Late late;
        CHECK(late.words.size() == 50);
        destroyed++;
    }
};

static thread_local Holder holder;
static thread_local std::unordered_map<std::string, std::vector<int>> cache;

static void work(int id) {
    holder.name += std::to_string(id);
    for (int i = 0; i < 200; i++) {
        holder.table[i] = std::to_string(i * 3);
        if (i % 10 == 0) {
            holder.arrays.emplace_back(new int[1000 + i * 100]);
            holder.arrays.back()[0] = i;
        }
        cache["key" + std::to_string(i % 37)].push_back(i);
    }
    CHECK(cache.size() == 37);
}

int main() {
    constexpr int waves = 30, perWave = 6;
    for (int w = 0; w < waves; w++) {
        std::vector<std::thread> threads;
        for (int i = 0; i < perWave; i++) threads.emplace_back(work, w * perWave + i);
        for (auto &t : threads) t.join();
    }
    long want = waves * perWave;
    CHECK(destroyed.load() == want);
    CHECK(late_destroyed.load() == want);
    // The main thread's thread_locals are destroyed at exit(), after this line.
    work(-1);
    std::printf("OK tls_cxx\n");
    return 0;
}
