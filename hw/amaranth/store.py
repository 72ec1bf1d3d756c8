"""A head buffer's memory: elements in linear order (element n = row * cols + col), P per word.

docs/rtl.md ("Head memories"). Every head schedule reads or writes either a *window* of up to P
consecutive elements (a block of a row, a linear vector pass, a stream word) or a single
element, one access per beat. A buffer whose rows all start on a word (cols a multiple of P,
or a single row) is one memory: windows start on a word, single elements are a lane select
(read) or a lane enable (write). Any other buffer keeps its even and odd words in two
memories, so a window at any start touches one word of each, and a rotator lines the lanes up;
a buffer of one word whose windows start inside it is a register, its windows lined up inside
the word; a one-row buffer of one word is one memory.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out


def _lg(n: int) -> int:
    return (n - 1).bit_length()


def windows_start_in_words(rows: int, cols: int, lanes: int, unaligned: bool = False) -> bool:
    """Whether a window of a [rows, cols] head memory may start inside a word: rows that do not start
    on words (cols no multiple of P, more than one row), or a writer of unaligned windows."""
    return (cols % lanes != 0 and rows > 1) or unaligned


def memory_depths(rows: int, cols: int, lanes: int, unaligned: bool = False) -> list[int]:
    """Words of each memory of a [rows, cols] head memory: one memory, or the even and the odd words.

    `unaligned`: some writer stores windows that start inside a word even where rows start on words
    (the flatten of a map whose channel count is not a multiple of P). A memory of one word is
    one memory either way: no window reaches past it.
    """
    words = -(-rows * cols // lanes)
    if words == 1 or not windows_start_in_words(rows, cols, lanes, unaligned):
        return [max(2, words)]
    return [max(2, -(-(words + 1) // 2))] * 2


def held_in_register(rows: int, cols: int, lanes: int, unaligned: bool = False) -> bool:
    """A [rows, cols] head memory of one word (at most P elements) whose windows start inside it is a register.

    Its LUT RAM would need a read bypass beside the in-word rotators (on the demo design's
    5 x 5 scores at P = 32, 1,191 LUT sites more once packed); a one-word memory of one row
    (the predictions) has no rotator and stays a memory.
    """
    return rows * cols <= lanes and windows_start_in_words(rows, cols, lanes, unaligned)


def pack_words(values: list[int], lanes: int, bits: int) -> list[int]:
    """Element values (two's complement, `bits` each) packed P per word, element 0 in lane 0 of word 0."""
    mask = (1 << bits) - 1
    words = [0] * max(1, -(-len(values) // lanes))
    for n, v in enumerate(values):
        words[n // lanes] |= (int(v) & mask) << (n % lanes * bits)
    return words


class LinearStore(wiring.Component):
    """`rows` x `cols` elements of `bits` bits; one window read and one window write per cycle.

    Read: `rd_start` (an element index) in cycle c gives, in cycle c + 1, element
    `rd_start + l` in lane l of `rd_lanes` and element `rd_start` in `rd_elem`; `rd_hold`
    keeps the previous cycle's data instead. Write: element `wr_start + l` takes lane l of
    `wr_data` for each lane l set in `wr_mask` (0: no write; 1: a single element), through a
    write register: a read addressed in the cycle after the write sees it (the read ports are
    transparent to the write register's write: synthesis then registers a LUT RAM's read
    address rather than its read data, docs/rtl.md "Head memories"). `windows` False promises
    that every window of more than one element starts on a word.
    `window_writes` False promises that every write is a single element (`wr_mask` 0 or 1):
    the write is then only a lane enable, and an even/odd memory needs no write rotator (on
    the 75 x 5 score memory at P = 8 that saved 1,330 of its 4,030 LUT sites). The
    accelerator sets it once it knows its writers (`note_window_writes`), before the memory is
    elaborated.
    `rotated_lanes`: of a memory whose windows may start inside a word, how many lanes such a window
    may take (`rd_lanes` lanes 0 .. rotated_lanes - 1; lane 0, `rd_elem`, always); the lanes above come from
    the addressed word as stored, right only for a read that starts on a word. The rotator is
    P x P lanes wide otherwise, and grows as P^2: on the 5 x 5 score memory, whose row blocks
    are at most 5 elements, it was most of the LUTs P = 16 added over P = 8. The accelerator
    sets it from its readers' lanes (`note_rotated_lanes`), before the memory is elaborated;
    None: every lane. `rotated_starts`: the lanes of a word at which such windows may start
    (None: any of the P), likewise from the readers; the rotator has a case for those starts
    only (the ArgMin's rows of the 5 x 5 scores start at 5 of the 32 lanes at P = 32). Lane 0 of
    an even/odd memory's rotator, which single-element reads take, keeps every start.
    """

    def __init__(
        self,
        rows: int,
        cols: int,
        lanes: int,
        bits: int,
        init: list[int] | None = None,
        window_writes: bool = True,
        unaligned: bool = False,
        rotated_lanes: int | None = None,
        rotated_starts: frozenset[int] | None = None,
    ) -> None:
        self.rows, self.cols, self.lanes, self.bits, self.unaligned = rows, cols, lanes, bits, unaligned
        self.rotated_lanes = lanes if rotated_lanes is None else min(rotated_lanes, lanes)
        self.rotated_starts = rotated_starts
        self.size = rows * cols
        self.depths = memory_depths(rows, cols, lanes, unaligned)
        #: windows may start inside a word (they are lined up by a rotator)
        self.windows = windows_start_in_words(rows, cols, lanes, unaligned)
        self.window_writes = window_writes
        self._elaborated = False
        self.init = list(init) if init is not None else []
        super().__init__(
            {
                "rd_start": In(range(self.size + lanes + 1)),
                "rd_hold": In(1),
                "rd_lanes": Out(unsigned(lanes * bits)),
                "rd_elem": Out(unsigned(bits)),
                "wr_start": In(range(self.size + lanes + 1)),
                "wr_mask": In(lanes),
                "wr_data": In(unsigned(lanes * bits)),
            }
        )

    def note_window_writes(self) -> None:
        """Some writer stores windows of more than one element (called while the accelerator elaborates)."""
        if self._elaborated and not self.window_writes:
            raise RuntimeError("a window writer was added after the head memory was elaborated without one")
        self.window_writes = True

    def note_rotated_lanes(self, count: int, starts: frozenset[int] | None = None) -> None:
        """A reader takes lanes 0 .. count - 1 of windows that start inside a word, at lanes `starts` (None: any)."""
        known = self.rotated_starts
        merged = None if starts is None or known is None else known | starts
        if self._elaborated and (count > self.rotated_lanes or (count > 0 and merged != known)):
            raise RuntimeError("a wider unaligned reader was added after the head memory was elaborated")
        self.rotated_lanes = max(self.rotated_lanes, min(count, self.lanes))
        if count > 0:
            self.rotated_starts = merged

    def _start_cases(self) -> list[int]:
        """The start lanes the read rotator has a case for: the declared ones (or all P), and 0 (a word's reads)."""
        return list(range(self.lanes)) if self.rotated_starts is None else sorted(self.rotated_starts | {0})

    def elaborate(self, platform: object) -> Module:
        """One memory (aligned windows) or an even and an odd memory with rotators, behind the write register."""
        self._elaborated = True
        m = Module()
        self._write = _WriteRegister(m, self)
        #: the memories (one, or the even and the odd words; none for a register), for test benches that peek
        self.memories: list[memory.Memory] = []
        #: the register that holds a one-word memory (`held_in_register`), else None
        self.word: Signal | None = None
        if held_in_register(self.rows, self.cols, self.lanes, self.unaligned):
            self._register(m)
        elif len(self.depths) == 2:
            self._banked(m)
        else:
            self._single(m)
        return m

    def _single(self, m: Module) -> None:
        p, bits, lg = self.lanes, self.bits, _lg(self.lanes)
        mem = memory.Memory(shape=unsigned(p * bits), depth=self.depths[0], init=pack_words(self.init, p, bits))
        m.submodules.mem = mem
        self.memories.append(mem)
        wr = mem.write_port(granularity=bits)
        rd = mem.read_port(transparent_for=(wr,))
        lane = Signal(range(max(2, p)), name="rd_lane")
        m.d.comb += [rd.addr.eq(self.rd_start >> lg), rd.en.eq(~self.rd_hold)]
        with m.If(~self.rd_hold):
            m.d.sync += lane.eq(self.rd_start[:lg] if lg else 0)
        self._read_word(m, rd.data, lane)
        data, enables = self._word_write(m)
        m.d.comb += [wr.addr.eq(self._write.start >> lg), wr.data.eq(data), wr.en.eq(enables)]

    def _register(self, m: Module) -> None:
        """One word as a register: no LUT RAM, whose cells and read bypass cost more than flip-flops here.

        `word_written` is the word with the write register's write applied; the word and the
        read data (unless `rd_hold`) take it at the clock edge, so a read sees the write of its
        own cycle, as the memory's transparent read port does.
        """
        p, bits, lg = self.lanes, self.bits, _lg(self.lanes)
        self.word = Signal(p * bits, init=pack_words(self.init, p, bits)[0], name="word")
        written, read = Signal.like(self.word, name="word_written"), Signal.like(self.word, name="rd_word", init=0)
        data, enables = self._word_write(m)
        lanes = [Mux(enables[k], data.word_select(k, bits), self.word.word_select(k, bits)) for k in range(p)]
        m.d.comb += written.eq(Cat(*lanes))
        m.d.sync += self.word.eq(written)
        lane = Signal(range(max(2, p)), name="rd_lane")
        with m.If(~self.rd_hold):
            m.d.sync += [read.eq(written), lane.eq(self.rd_start[:lg] if lg else 0)]
        self._read_word(m, read, lane)

    def _read_word(self, m: Module, word: object, lane: Signal) -> None:
        """`rd_lanes` and `rd_elem` from the addressed word and the window's start lane in it."""
        p, bits = self.lanes, self.bits
        m.d.comb += [self.rd_lanes.eq(word), self.rd_elem.eq(word.word_select(lane, bits) if p > 1 else word)]
        if self.windows:  # one word: a window that starts at lane r is the word moved down by r lanes
            width = max(1, self.rotated_lanes) * bits
            padded = Cat(word, Const(0, width))
            starts = self._start_cases()
            with m.Switch(lane):
                for r in starts:
                    with m.Case(r) if r != starts[-1] else m.Default():
                        m.d.comb += self.rd_lanes[:width].eq(padded[r * bits : r * bits + width])

    def _word_write(self, m: Module) -> tuple[object, object]:
        """(word data, lane enables) of the write register's write into its word (one-word windows moved)."""
        p, bits, lg = self.lanes, self.bits, _lg(self.lanes)
        element, onehot = self._element_write()
        if not self.window_writes:
            return element, onehot
        data, mask = self._write.data, self._write.mask
        if self.windows:  # one word: a window that starts at lane r moves up by r lanes
            data, mask = Signal.like(data, name="wr_moved"), Signal.like(mask, name="wr_moved_mask")
            with m.Switch(self._write.start[:lg]):
                for r in range(p):
                    with m.Case(r):
                        m.d.comb += data.eq(Cat(Const(0, r * bits), self._write.data))
                        m.d.comb += mask.eq(Cat(Const(0, r), self._write.mask))
        single = self._write.mask == 1
        return Mux(single, element, data), Cat(*[Mux(single, onehot[k], mask[k]) for k in range(p)])

    def _element_write(self) -> tuple[object, object]:
        """(word data, lane enables) of a single-element write: the element in every lane, lane `wr_start` mod P."""
        p, lg = self.lanes, _lg(self.lanes)
        shift = self._write.start[:lg] if lg else Const(0, 1)
        onehot = Cat(*[(shift == k) & self._write.mask[0] for k in range(p)])
        return self._write.data[: self.bits].replicate(p), onehot

    def _banked(self, m: Module) -> None:
        p, bits, lg = self.lanes, self.bits, _lg(self.lanes)
        init = pack_words(self.init, p, bits)
        banks = []
        for parity in range(2):
            contents = init[parity::2]
            mem = memory.Memory(shape=unsigned(p * bits), depth=self.depths[parity], init=contents)
            m.submodules[f"bank{parity}"] = mem
            self.memories.append(mem)
            wr = mem.write_port(granularity=bits)
            banks.append((mem.read_port(transparent_for=(wr,)), wr))
        # read: word w and w + 1 from the two banks, then lanes r .. r + P - 1 of the pair
        word = self.rd_start >> lg
        odd, shift = Signal(name="rd_odd"), Signal(range(p), name="rd_shift")
        with m.If(~self.rd_hold):
            m.d.sync += [odd.eq(word[0]), shift.eq(self.rd_start[:lg])]
        m.d.comb += [banks[0][0].addr.eq((word + 1) >> 1), banks[1][0].addr.eq(word >> 1)]
        m.d.comb += [banks[0][0].en.eq(~self.rd_hold), banks[1][0].en.eq(~self.rd_hold)]
        low = Mux(odd, banks[1][0].data, banks[0][0].data)
        high = Mux(odd, banks[0][0].data, banks[1][0].data)
        pair, width = Cat(low, high), max(1, self.rotated_lanes) * bits
        m.d.comb += self.rd_lanes.eq(low)  # the word as stored: a read that starts on it
        with m.Switch(shift):  # lane 0 (single elements) from any start
            for r in range(p):
                with m.Case(r):
                    m.d.comb += self.rd_lanes[:bits].eq(pair[r * bits : (r + 1) * bits])
        starts = self._start_cases()
        if width > bits:
            with m.Switch(shift):  # the other lanes of a window from its declared starts
                for r in starts:
                    with m.Case(r) if r != starts[-1] else m.Default():
                        m.d.comb += self.rd_lanes[bits:width].eq(pair[r * bits + bits : r * bits + width])
        m.d.comb += self.rd_elem.eq(self.rd_lanes[:bits])
        wword, wshift = self._write.start >> lg, self._write.start[:lg]
        if not self.window_writes:  # one element: lane r of word w, in the bank of w's parity
            element, onehot = self._element_write()
            for parity, (_, wr) in enumerate(banks):
                here = wword[0] == parity
                m.d.comb += [wr.addr.eq(wword >> 1), wr.data.eq(element), wr.en.eq(Mux(here, onehot, 0))]
            return
        # write: the P lanes moved up by r across word w (lanes r..) and word w + 1
        spread = Signal(2 * p * bits, name="wr_spread")
        enables = Signal(2 * p, name="wr_enables")
        with m.Switch(wshift):
            for r in range(p):
                with m.Case(r):
                    m.d.comb += spread.eq(Cat(Const(0, r * bits), self._write.data, Const(0, (p - r) * bits)))
                    m.d.comb += enables.eq(Cat(Const(0, r), self._write.mask, Const(0, p - r)))
        for parity, (_, wr) in enumerate(banks):
            first = wword[0] == parity  # this bank holds word w (else word w + 1)
            m.d.comb += [
                wr.addr.eq(Mux(first, wword >> 1, (wword + 1) >> 1)),
                wr.data.eq(Mux(first, spread[: p * bits], spread[p * bits :])),
                wr.en.eq(Mux(first, enables[:p], enables[p:])),
            ]


class _WriteRegister:
    """The write port's inputs one cycle late: `start`, `mask` and `data` as registered copies.

    Every head memory writes one cycle after its writer presents the element, so that the
    writer's logic (the PPU's requantiser, the OR of all engines' write ports) ends in a
    register instead of running on into the memories' write rotators and LUT-RAM write
    ports: on the ECP5 that path was the design's critical path. It costs no cycle: an
    engine's last write lands in the issue cycle of the next instruction, whose first read is
    addressed a cycle later (docs/rtl.md, "Head memories").
    """

    def __init__(self, m: Module, store: LinearStore) -> None:
        self.start = Signal.like(store.wr_start, name="wr_start_q")
        self.mask = Signal.like(store.wr_mask, name="wr_mask_q")
        self.data = Signal.like(store.wr_data, name="wr_data_q")
        m.d.sync += [self.start.eq(store.wr_start), self.mask.eq(store.wr_mask), self.data.eq(store.wr_data)]
