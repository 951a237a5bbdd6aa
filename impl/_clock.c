/* The virtual instruction clock's fast path: a UC_HOOK_BLOCK callback in C.
 *
 * Room: counting retired guest instructions for impl.vcpu, block by block,
 * without calling Python. It owns the table of blocks already decoded
 * (linear address, size, decode context -> instruction count) and nothing
 * else: every decision that needs decoding, a register or a trace event is
 * taken in Python (impl/vcpu.py), which this calls back for any block it
 * cannot account for. Imports nothing but the C library; Unicorn calls it
 * with the arguments of uc_cb_hookcode_t (unicorn.h).
 *
 * The rule, per block Unicorn starts:
 *   the block before it retired all its instructions (base += prev);
 *   the block is known if its slot holds the same address, size and decode
 *   context, its bytes are still the bytes it was decoded from (compared
 *   with the copy, unless its pages are write-protected and so cannot have
 *   changed), and the instruction budget does not end inside it;
 *   a known block sets prev to its count; any other block goes to Python.
 * A block that may change the decode context (CR0, CR3, CR4, EFER, CS or a
 * TLB flush: see impl/vcpu.py) sends the block after it to Python too. */

#include <stdint.h>
#include <string.h>

#define HVMSPEC_SLOTS 4096
#define FLAG_CONTEXT 1u  /* the decode context may differ after this block */
#define FLAG_VERIFY 2u   /* compare the bytes: their pages are not protected */

typedef struct {
    uint64_t address;        /* linear address of the block's first byte */
    uint32_t size;           /* bytes, as Unicorn reports them */
    uint32_t count;          /* instructions */
    uint32_t context;        /* decode context id; 0: the slot is empty */
    uint32_t flags;
    const uint8_t *host[2];  /* host addresses of the bytes on each page */
    uint32_t split;          /* how many bytes lie on the first page */
    uint32_t reserved;
    const uint8_t *copy;     /* the bytes the block was decoded from */
} hvmspec_entry;

typedef struct {
    uint64_t base;       /* instruction count at the start of the current block */
    uint64_t prev;       /* instructions of the current block */
    uint64_t end;        /* the count at which the run must stop */
    int64_t current;     /* slot of the current block; -1: none */
    uint32_t context;    /* the decode context id now */
    uint32_t quiet;      /* the VMM is stepping an instruction itself */
    uint32_t reprobe;    /* the next block goes to Python */
    uint32_t reserved;
    uint64_t fast;       /* blocks accounted for here */
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

static inline int same(const uint8_t *host, const uint8_t *copy, uint32_t n) {
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

static inline int unchanged(const hvmspec_entry *e) {
    if (!(e->flags & FLAG_VERIFY))
        return 1;
    return same(e->host[0], e->copy, e->split)
        && (e->split == e->size || same(e->host[1], e->copy + e->split, e->size - e->split));
}

void hvmspec_on_block(void *uc, uint64_t address, uint32_t size, hvmspec_clock *c) {
    (void)uc;
    if (c->quiet)
        return;
    c->base += c->prev;
    c->prev = 0;
    if (__builtin_expect(!c->reprobe, 1)) {
        uint32_t s = slot_of(address);
        const hvmspec_entry *e = &c->table[s];
        if (__builtin_expect(e->address == address && e->size == size && e->context == c->context
                             && e->context && c->base + e->count <= c->end && unchanged(e), 1)) {
            c->prev = e->count;
            c->current = s;
            c->reprobe = e->flags & FLAG_CONTEXT;
            c->fast++;
            return;
        }
    }
    c->slow++;
    c->slow_path(address, size);
}
