/* The virtual instruction clock's fast path: a UC_HOOK_BLOCK callback in C.
 *
 * Room: counting retired guest instructions for impl.vcpu, block by block,
 * without calling Python. It owns the table of blocks already decoded
 * (linear address, size, decode context -> instruction count) and nothing
 * else: every decision that needs decoding, a register or a trace event is
 * taken in Python (impl/blocks.py), which this calls back for any block it
 * cannot account for. Imports nothing but the C library; Unicorn calls it
 * with the arguments of uc_cb_hookcode_t (unicorn.h).
 *
 * The rule, per block Unicorn starts: the block is known if its slot holds
 * the same address, size and decode context, its bytes are still the bytes
 * it was decoded from (compared with the copy, unless its pages are
 * write-protected and so cannot have changed), and the instruction budget
 * does not end inside it (its count fits in what is left). A known block is
 * counted as retired whole, at once (left -= count): where it stops early
 * (an exit, a fault), Python counts back from the block's start. Any other
 * block goes to Python. A block that may change the decode context (CR0,
 * CR3, CR4, EFER, CS, a TLB flush: see impl/blocks.py) sets the context to 0,
 * which no block has, so that the block after it goes to Python too (and the
 * global context, see below, to 0 with it); so does
 * a block that may set RFLAGS.IF (STI, POPF: Unicorn ends its block after
 * each) while the VMM waits for an interrupt window (``window``). */

#include <stdint.h>
#include <string.h>

#define HVMSPEC_SLOTS 65536
#define FLAG_CONTEXT 1u  /* the decode context may differ after this block */
#define FLAG_VERIFY 2u   /* compare the bytes: their pages are not write-protected */
#define FLAG_IF 4u       /* it may set RFLAGS.IF (STI, POPF): in a window, the
                          * block after it goes to Python, which looks at IF */
#define EMPTY 0xFFFFFFFFu /* the context of an empty slot, which no block has */

typedef struct {
    uint64_t address;        /* linear address of the block's first byte */
    uint32_t size;           /* bytes, as Unicorn reports them */
    uint32_t count;          /* instructions */
    uint32_t context;        /* decode context id; EMPTY: the slot is empty */
    uint32_t flags;
    const uint8_t *host[2];  /* host addresses of the bytes on each page */
    uint32_t split;          /* how many bytes lie on the first page */
    uint32_t mode;           /* the decode context's id less the translation (CR3
                              * and the TLB flushes): see refill() */
    const uint8_t *copy;     /* the bytes the block was decoded from */
    uint32_t frame[2];       /* guest-physical page frames of the bytes on each page */
    const uint16_t *tsc;     /* its RDTSCs: (byte offset, instruction index) pairs,
                              * ended by an offset of 0xFFFF; 0: none */
} hvmspec_entry;

typedef struct {
    uint64_t start, size;    /* guest-physical RAM [start, start + size) */
    const uint8_t *host;     /* is here in this process */
} hvmspec_piece;

#define HVMSPEC_PIECES 16

typedef struct {
    int64_t left;        /* instructions the run may still retire (below 0: the
                          * current block overruns the budget; it stops inside) */
    uint64_t end;        /* the instruction count at which the run must stop */
    int64_t current;     /* slot of the block being executed; -1: none */
    uint32_t context;    /* the decode context id now; 0: to be probed */
    uint32_t quiet;      /* the VMM is stepping an instruction itself */
    uint32_t window;     /* interrupt-window exiting: IF is 0 and watched */
    uint32_t global_context; /* the decode context id of blocks on global pages
                              * (kept across MOV to CR3); 0: none, or to be probed */
    uint64_t slow;       /* blocks sent to Python */
    void (*slow_path)(uint64_t address, uint32_t size);
    uint64_t refills;    /* blocks found again by a page walk (refill) */
    uint64_t cr3;        /* as probed with the context */
    uint32_t mode;       /* the context's id less the translation */
    uint32_t paging;     /* the page walk: 0 none (or not to be done here), 2
                          * 32-bit, 3 PAE, 4 4-level; 0x10 added: CR4.PSE */
    uint32_t pieces;     /* how many of piece[] are RAM */
    uint32_t reserved2;
    /* RDTSC (hvmspec_on_rdtsc): what the clock at an instruction needs
     * besides the block (the code segment's base and the linear address
     * mask, as probed with the context; the bus time so far), the TSC's
     * rate, Unicorn's register access and the ids of RIP, RAX and RDX,
     * and Python's answer for an RDTSC this cannot place */
    uint64_t cs_base, linear_mask, io_ns, tsc_hz;
    uint64_t tsc_fast, tsc_slow;  /* RDTSCs answered here, and by Python */
    int (*reg_read)(void *uc, int regid, void *value);
    int (*reg_write)(void *uc, int regid, const void *value);
    int32_t reg_rip, reg_rax, reg_rdx, reserved3;
    void (*tsc_path)(void);
    hvmspec_piece piece[HVMSPEC_PIECES];
    hvmspec_entry table[HVMSPEC_SLOTS];
} hvmspec_clock;

uint32_t hvmspec_slots(void) { return HVMSPEC_SLOTS; }
uint32_t hvmspec_entry_size(void) { return sizeof(hvmspec_entry); }
uint32_t hvmspec_clock_size(void) { return sizeof(hvmspec_clock); }

static inline uint32_t slot_of(uint64_t address) {
    return (uint32_t)(address ^ (address >> 12)) & (HVMSPEC_SLOTS - 1);
}

uint32_t hvmspec_slot(uint64_t address) { return slot_of(address); }

static int same(const uint8_t *host, const uint8_t *copy, uint32_t n) {
    uint64_t x, y;
    while (n >= 8) {
        memcpy(&x, host, 8);
        memcpy(&y, copy, 8);
        if (x != y)
            return 0;
        host += 8, copy += 8, n -= 8;
    }
    while (n--)
        if (*host++ != *copy++)
            return 0;
    return 1;
}

static __attribute__((noinline)) void slow(uint64_t address, uint32_t size, hvmspec_clock *c) {
    if (c->quiet)
        return;
    c->slow++;
    c->slow_path(address, size);
}

static inline void count(const hvmspec_entry *e, uint32_t s, hvmspec_clock *c) {
    c->left -= e->count;
    c->current = s;
    if (e->flags & FLAG_CONTEXT || (e->flags & FLAG_IF && c->window))
        c->context = c->global_context = 0;
}

static int unchanged(const hvmspec_entry *e) {
    return same(e->host[0], e->copy, e->split)
        && (e->split == e->size || same(e->host[1], e->copy + e->split, e->size - e->split));
}

/* Out of line and called last, so that the common path (a block on a
 * write-protected page) is a handful of instructions that save nothing.
 * A block inside the block before it that ends before that one ends
 * goes to Python: the block before stored into its own bytes, and Unicorn
 * (QEMU) abandoned it at the store, which it runs again as a block of one
 * instruction; Python takes back what was counted of the abandoned block.
 * Only a page the guest writes holds such blocks (FLAG_VERIFY). */
static __attribute__((noinline)) void verified(const hvmspec_entry *e, uint32_t s,
                                               uint64_t address, uint32_t size, hvmspec_clock *c) {
    if (c->current >= 0 && c->current < HVMSPEC_SLOTS) {
        const hvmspec_entry *p = &c->table[c->current];
        if ((p->flags & FLAG_VERIFY) && address >= p->address
            && address + size < p->address + p->size) {
            slow(address, size, c);
            return;
        }
    }
    if (unchanged(e))
        count(e, s, c);
    else
        slow(address, size, c);
}

/* The host address of guest-physical [gpa, gpa + n), if RAM backs it. */
static const uint8_t *ram(const hvmspec_clock *c, uint64_t gpa, uint32_t n) {
    for (uint32_t i = 0; i < c->pieces; i++) {
        const hvmspec_piece *p = &c->piece[i];
        if (gpa >= p->start && gpa + n <= p->start + p->size)
            return p->host + (gpa - p->start);
    }
    return 0;
}

/* The guest-physical page frame that the guest's page tables map `linear`
 * to now, or -1 where the walk does not end at a present entry in RAM
 * (SDM vol. 3A chapter 4: the 32-bit, PAE and 4-level walks). Nothing is
 * written: the accessed bits are the CPU's own walk's to set, when its TLB
 * misses (Unicorn's, as it fetches the block). PAE's PDPTEs are read from
 * memory, as impl/guest_linear.py reads them, not from a copy loaded with CR3. */
static int64_t frame_of(const hvmspec_clock *c, uint64_t linear) {
    uint32_t format = c->paging & 0xF, pse = c->paging & 0x10;
    uint64_t table, entry, big;
    if (format == 2) {
        const uint8_t *p = ram(c, (c->cr3 & 0xFFFFF000u) + ((linear >> 22 & 0x3FF) << 2), 4);
        uint32_t e32;
        if (!p)
            return -1;
        memcpy(&e32, p, 4);
        if (!(e32 & 1))
            return -1;
        if (pse && (e32 & 0x80))
            return ((e32 & 0xFFC00000u) | (linear & 0x3FF000)) >> 12;
        p = ram(c, (e32 & 0xFFFFF000u) + ((linear >> 12 & 0x3FF) << 2), 4);
        if (!p)
            return -1;
        memcpy(&e32, p, 4);
        return (e32 & 1) ? (int64_t)(e32 >> 12) : -1;
    }
    static const int shifts4[] = {39, 30, 21, 12}, shifts3[] = {30, 21, 12};
    const int *shifts = format == 4 ? shifts4 : shifts3;
    int levels = format == 4 ? 4 : 3;
    table = format == 4 ? (c->cr3 & 0xFFFFFFFFFF000ull) : (c->cr3 & 0xFFFFFFE0u);
    for (int level = 0; level < levels; level++) {
        int shift = shifts[level];
        uint64_t index = format == 3 && level == 0 ? (linear >> 30 & 3) : (linear >> shift & 0x1FF);
        const uint8_t *p = ram(c, table + index * 8, 8);
        if (!p)
            return -1;
        memcpy(&entry, p, 8);
        if (!(entry & 1))
            return -1;
        big = shift < 39 && shift > 12 && (entry & 0x80) && !(format == 3 && level == 0);
        if (big) {
            uint64_t span = (1ull << shift) - 1;
            return (((entry & 0xFFFFFFFFFF000ull) & ~span) | (linear & span)) >> 12;
        }
        table = entry & 0xFFFFFFFFFF000ull;
    }
    return (int64_t)(table >> 12);
}

/* A block decoded in another decode context that differs only in the
 * translation (another CR3, or a TLB flush since), at the same address and
 * size: the CPU would walk the page tables again on its TLB miss, and so
 * does this; if they map the block's pages to the same frames, its bytes
 * are the ones it was decoded from (their pages are write-protected, or
 * compared) and it is known in this context too. This is what keeps an
 * operating system's kernel fast across the CR3 writes of every process
 * switch and of page-table isolation, without a call to Python. */
static __attribute__((noinline)) int refill(hvmspec_entry *e, uint64_t address,
                                            hvmspec_clock *c) {
    if (!c->paging || e->mode != c->mode || !c->context || e->context == EMPTY)
        return 0;
    if (frame_of(c, address) != e->frame[0])
        return 0;
    if (e->split != e->size && frame_of(c, (address | 0xFFF) + 1) != e->frame[1])
        return 0;
    e->context = c->context;
    c->refills++;
    return 1;
}

void hvmspec_on_block(void *uc, uint64_t address, uint32_t size, hvmspec_clock *c) {
    (void)uc;
    uint32_t s = slot_of(address);
    hvmspec_entry *e = &c->table[s];
    /* no block has context 0 (to be probed) nor EMPTY (an empty slot); a
     * block on global pages has the global context, which a MOV to CR3
     * keeps (impl/blocks.py) */
    if (__builtin_expect(e->address == address && e->size == size
                         && (e->context == c->context || e->context == c->global_context
                             || refill(e, address, c))
                         && (int64_t)e->count <= c->left, 1)) {
        /* count() for the common flags of 0, spelt out: measured side by
         * side, 0.54 of raw Unicorn's speed against 0.51 through count() */
        if (__builtin_expect(!e->flags, 1)) {
            c->left -= e->count;
            c->current = s;
        } else if (!(e->flags & FLAG_VERIFY)) {
            count(e, s, c);
        } else {
            verified(e, s, address, size, c);
        }
        return;
    }
    slow(address, size, c);
}

/* UC_HOOK_INSN for RDTSC (uc_cb_insn_cpuid_t: return 1, the CPU's own
 * answer is skipped). The TSC is the virtual clock at the boundary before
 * the instruction, times the TSC's rate (impl/cpuid.py): the count at the
 * start of the block executing now, which the clock counted whole, plus
 * the RDTSC's index in it, plus the bus time. The block and the index
 * are found without Python when the block is in the table and its decode
 * listed its RDTSCs; any other RDTSC is Python's (tsc_path). memtest86+
 * reads the TSC every few instructions in its delay loops: 21 us each
 * through Python. */
uint32_t hvmspec_on_rdtsc(void *uc, hvmspec_clock *c) {
    int64_t s = c->current;
    if (s >= 0 && s < HVMSPEC_SLOTS) {
        const hvmspec_entry *e = &c->table[s];
        uint64_t rip = 0;
        if (e->tsc && e->context != EMPTY && c->reg_read(uc, c->reg_rip, &rip) == 0) {
            uint64_t offset = ((c->cs_base + rip) & c->linear_mask) - e->address;
            for (const uint16_t *t = e->tsc; t[0] != 0xFFFF; t += 2) {
                if (t[0] != offset)
                    continue;
                uint64_t clock = c->end - (uint64_t)c->left - e->count + t[1] + c->io_ns;
                uint64_t ticks = (uint64_t)((unsigned __int128)clock * c->tsc_hz / 1000000000u);
                uint64_t low = ticks & 0xFFFFFFFFu, high = ticks >> 32;
                c->reg_write(uc, c->reg_rax, &low);
                c->reg_write(uc, c->reg_rdx, &high);
                c->tsc_fast++;
                return 1;
            }
        }
    }
    c->tsc_slow++;
    c->tsc_path();
    return 1;
}
