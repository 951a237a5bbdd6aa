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
 * which no block has, so that the block after it goes to Python too; so does
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
    uint32_t reserved;
    const uint8_t *copy;     /* the bytes the block was decoded from */
    uint64_t reserved2;      /* to 64 bytes */
} hvmspec_entry;

typedef struct {
    int64_t left;        /* instructions the run may still retire (below 0: the
                          * current block overruns the budget; it stops inside) */
    uint64_t end;        /* the instruction count at which the run must stop */
    int64_t current;     /* slot of the block being executed; -1: none */
    uint32_t context;    /* the decode context id now; 0: to be probed */
    uint32_t quiet;      /* the VMM is stepping an instruction itself */
    uint32_t window;     /* interrupt-window exiting: IF is 0 and watched */
    uint32_t reserved;
    uint64_t slow;       /* blocks sent to Python */
    void (*slow_path)(uint64_t address, uint32_t size);
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
        c->context = 0;
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

void hvmspec_on_block(void *uc, uint64_t address, uint32_t size, hvmspec_clock *c) {
    (void)uc;
    uint32_t s = slot_of(address);
    const hvmspec_entry *e = &c->table[s];
    /* no block has context 0 (to be probed) nor EMPTY (an empty slot) */
    if (__builtin_expect(e->context == c->context && e->address == address && e->size == size
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
