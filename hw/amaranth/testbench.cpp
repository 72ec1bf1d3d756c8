// Verilator testbench of the generated accelerator (metahw.hw.amaranth.verilator drives it).
//
// Reads a stimulus file: "episodes in_words out_words seed max_cycles", then per episode the
// number of input beats and each beat as in_words hex 32-bit words (least significant first).
// Per episode it pulses start, feeds the in stream, takes the out stream, and records the
// cycle (from the start cycle = 0) of every instruction issue, the done/error cycle, the
// stalled handshake cycles and every out beat. seed 0: source always valid, sink always
// ready; otherwise both are withheld at random (a 32-bit LCG), 1 cycle in 4.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "Vmetahw_accel.h"
#include "verilated.h"

template <typename T>
static void set_port(T& port, const std::vector<uint32_t>& w) {
    uint64_t v = w.empty() ? 0 : w[0];
    if (w.size() > 1) v |= static_cast<uint64_t>(w[1]) << 32;
    port = static_cast<T>(v);
}
template <std::size_t N>
static void set_port(VlWide<N>& port, const std::vector<uint32_t>& w) {
    for (std::size_t i = 0; i < N; ++i) port[i] = i < w.size() ? w[i] : 0;
}
template <typename T>
static void put_port(FILE* out, const T& port, int words) {
    uint64_t v = static_cast<uint64_t>(port);
    for (int i = 0; i < words; ++i) std::fprintf(out, " %08x", static_cast<uint32_t>(i < 2 ? v >> (32 * i) : 0));
}
template <std::size_t N>
static void put_port(FILE* out, const VlWide<N>& port, int words) {
    for (int i = 0; i < words; ++i) std::fprintf(out, " %08x", static_cast<uint32_t>(port[i]));
}

static uint32_t lcg_state = 1;
static bool coin() {
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return (lcg_state >> 28) & 3;  // true 3 times in 4
}

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s STIMULUS RESULTS\n", argv[0]);
        return 2;
    }
    FILE* in = std::fopen(argv[1], "r");
    FILE* out = std::fopen(argv[2], "w");
    if (!in || !out) {
        std::fprintf(stderr, "cannot open %s or %s\n", argv[1], argv[2]);
        return 2;
    }
    int episodes, in_words, out_words;
    unsigned seed;
    long long max_cycles;
    if (std::fscanf(in, "%d %d %d %u %lld", &episodes, &in_words, &out_words, &seed, &max_cycles) != 5) return 2;
    lcg_state = seed ? seed : 1;
    auto* ctx = new VerilatedContext;
    auto* top = new Vmetahw_accel{ctx};
    auto tick = [&]() {
        top->clk = 0;
        top->eval();
        top->clk = 1;
        top->eval();
    };
    top->rst = 1;
    top->start = 0;
    top->in_valid = 0;
    top->out_ready = 1;
    tick();
    tick();
    top->rst = 0;
    tick();
    for (int e = 0; e < episodes; ++e) {
        int beats;
        if (std::fscanf(in, "%d", &beats) != 1) return 2;
        std::vector<std::vector<uint32_t>> stream(beats, std::vector<uint32_t>(in_words));
        for (auto& beat : stream)
            for (auto& word : beat)
                if (std::fscanf(in, "%x", &word) != 1) return 2;
        std::fprintf(out, "episode %d\n", e);
        std::size_t next = 0;
        long long cycle = 0, stalls = 0;
        bool finished = false;
        top->start = 1;
        while (!finished) {
            bool valid = next < stream.size() && (seed == 0 || coin());
            top->in_valid = valid;
            if (valid) set_port(top->in_data, stream[next]);
            top->out_ready = seed == 0 || coin();
            top->clk = 0;
            top->eval();  // settle the combinational outputs of this cycle before sampling them
            if (top->issue) std::fprintf(out, "issue %d %lld\n", static_cast<int>(top->pc), cycle);
            if (top->in_ready && !top->in_valid) ++stalls;
            if (top->out_valid && !top->out_ready) ++stalls;
            if (top->out_valid && top->out_ready) {
                std::fprintf(out, "out");
                put_port(out, top->out_data, out_words);
                std::fprintf(out, "\n");
            }
            if (top->in_ready && top->in_valid) ++next;
            if (top->done || top->error) {
                std::fprintf(out, "end %lld %s %d stalls %lld\n", cycle, top->done ? "done" : "error",
                             static_cast<int>(top->error_code), stalls);
                finished = true;
            }
            top->clk = 1;
            top->eval();
            top->start = 0;
            if (++cycle > max_cycles) {
                std::fprintf(out, "timeout %lld\n", cycle);
                std::fclose(out);
                return 1;
            }
        }
        tick();  // back to idle
    }
    std::fclose(out);
    delete top;
    delete ctx;
    return 0;
}
