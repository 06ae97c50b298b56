/* Hand-written; not generated. See include/trace_arena.h. */
#include "trace_arena.h"

#include <stdlib.h>
#include <string.h>

/* Under AddressSanitizer (the fuzzing build, scripts/fuzz) the arena's memory is poisoned except for
 * what has been handed out, and every allocation is followed by a poisoned red zone: a read past the
 * end of a decoded string or array, or of memory from before the last reset, is then reported like
 * heap misuse instead of landing silently in the next allocation. Limits count the same bytes either way. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TRACE_ARENA_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TRACE_ARENA_ASAN 1
#endif
#ifdef TRACE_ARENA_ASAN
#include <sanitizer/asan_interface.h>
enum { TRACE_ARENA_REDZONE = 32 };
#define TRACE_ARENA_POISON(address, size) ASAN_POISON_MEMORY_REGION(address, size)
#define TRACE_ARENA_UNPOISON(address, size) ASAN_UNPOISON_MEMORY_REGION(address, size)
#else
enum { TRACE_ARENA_REDZONE = 0 };
#define TRACE_ARENA_POISON(address, size) ((void)(address), (void)(size))
#define TRACE_ARENA_UNPOISON(address, size) ((void)(address), (void)(size))
#endif

typedef struct TraceArenaChunk {
    struct TraceArenaChunk *next;
    size_t capacity;
    size_t used;
    /* followed by capacity bytes, 16-byte aligned */
} TraceArenaChunk;

struct TraceArena {
    ProtobufCAllocator allocator; /* first, so the allocator's data pointer is the arena */
    TraceArenaChunk *first;
    TraceArenaChunk *current;
    size_t handed_out;
    size_t byte_limit;
};

enum { TRACE_ARENA_ALIGNMENT = 16, TRACE_ARENA_HEADER = (sizeof(TraceArenaChunk) + 15) & ~(size_t)15 };

static TraceArenaChunk *trace_arena_new_chunk(size_t capacity) {
    TraceArenaChunk *chunk = malloc(TRACE_ARENA_HEADER + capacity);
    if (chunk == NULL) return NULL;
    chunk->next = NULL;
    chunk->capacity = capacity;
    chunk->used = 0;
    TRACE_ARENA_POISON((unsigned char *)chunk + TRACE_ARENA_HEADER, capacity);
    return chunk;
}

static unsigned char *trace_arena_chunk_data(TraceArenaChunk *chunk) {
    return (unsigned char *)chunk + TRACE_ARENA_HEADER;
}

static void *trace_arena_alloc_uninitialized(TraceArena *arena, size_t size) {
    size_t rounded = (size + (TRACE_ARENA_ALIGNMENT - 1)) & ~(size_t)(TRACE_ARENA_ALIGNMENT - 1);
    if (rounded < size) return NULL; /* overflow */
    if (arena->byte_limit != 0 && arena->handed_out + rounded > arena->byte_limit) return NULL;
    size_t needed = rounded + TRACE_ARENA_REDZONE;
    if (needed < rounded) return NULL; /* overflow */
    TraceArenaChunk *chunk = arena->current;
    if (chunk->capacity - chunk->used < needed) {
        /* Reuse chunks kept from before the last reset when they fit, else append a new one. */
        while (chunk->next != NULL && chunk->next->capacity < needed) chunk = chunk->next;
        if (chunk->next != NULL) {
            chunk = chunk->next;
            chunk->used = 0;
        } else {
            size_t capacity = arena->current->capacity * 2;
            if (capacity < needed) capacity = needed;
            TraceArenaChunk *fresh = trace_arena_new_chunk(capacity);
            if (fresh == NULL) return NULL;
            chunk->next = fresh;
            chunk = fresh;
        }
        arena->current = chunk;
    }
    void *memory = trace_arena_chunk_data(chunk) + chunk->used;
    chunk->used += needed;
    arena->handed_out += rounded;
    TRACE_ARENA_UNPOISON(memory, size);
    return memory;
}

void *trace_arena_alloc(TraceArena *arena, size_t size) {
    void *memory = trace_arena_alloc_uninitialized(arena, size);
    if (memory != NULL) memset(memory, 0, size);
    return memory;
}

/* protobuf-c initialises or fills everything it allocates, so its memory is not zeroed. */
static void *trace_arena_protobuf_alloc(void *data, size_t size) {
    return trace_arena_alloc_uninitialized((TraceArena *)data, size);
}

static void trace_arena_protobuf_free(void *data, void *pointer) {
    (void)data;
    (void)pointer; /* released by trace_arena_reset */
}

TraceArena *trace_arena_create(size_t initial_capacity, size_t byte_limit) {
    TraceArena *arena = calloc(1, sizeof(TraceArena));
    if (arena == NULL) return NULL;
    if (initial_capacity < 4096) initial_capacity = 4096;
    arena->first = trace_arena_new_chunk(initial_capacity);
    if (arena->first == NULL) {
        free(arena);
        return NULL;
    }
    arena->current = arena->first;
    arena->byte_limit = byte_limit;
    arena->allocator.alloc = trace_arena_protobuf_alloc;
    arena->allocator.free = trace_arena_protobuf_free;
    arena->allocator.allocator_data = arena;
    return arena;
}

void trace_arena_destroy(TraceArena *arena) {
    if (arena == NULL) return;
    TraceArenaChunk *chunk = arena->first;
    while (chunk != NULL) {
        TraceArenaChunk *next = chunk->next;
        free(chunk);
        chunk = next;
    }
    free(arena);
}

void trace_arena_reset(TraceArena *arena, size_t retain_capacity) {
    /* Keep the chain while its total stays within retain_capacity; free the rest. */
    size_t kept = 0;
    TraceArenaChunk *chunk = arena->first;
    TraceArenaChunk *last_kept = NULL;
    while (chunk != NULL && (last_kept == NULL || kept + chunk->capacity <= retain_capacity)) {
        kept += chunk->capacity;
        chunk->used = 0;
        TRACE_ARENA_POISON(trace_arena_chunk_data(chunk), chunk->capacity);
        last_kept = chunk;
        chunk = chunk->next;
    }
    last_kept->next = NULL;
    while (chunk != NULL) {
        TraceArenaChunk *next = chunk->next;
        free(chunk);
        chunk = next;
    }
    arena->current = arena->first;
    arena->handed_out = 0;
}

void trace_arena_set_limit(TraceArena *arena, size_t byte_limit) {
    arena->byte_limit = byte_limit;
}

ProtobufCAllocator *trace_arena_allocator(TraceArena *arena) {
    return &arena->allocator;
}

size_t trace_arena_used(const TraceArena *arena) {
    return arena->handed_out;
}

#if defined(__GLIBC__)
#include <malloc.h>
#endif

int trace_release_free_memory(void) {
#if defined(__GLIBC__)
    return malloc_trim(0);
#else
    return 0;
#endif
}
