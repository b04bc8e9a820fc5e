/* arena.h — bump allocator for compile-time memory.
 *
 * Every graph, string and attribute built during one compilation lives in one
 * arena and is released with one arena_free(). Allocations are zeroed and
 * 16-byte aligned. Out of memory is fatal (compile-time data is small). */
#pragma once
#include <stdarg.h>
#include <stddef.h>

typedef struct Arena Arena;

Arena *arena_new(void);
void arena_free(Arena *a);
void *arena_alloc(Arena *a, size_t size);
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *arena_vprintf(Arena *a, const char *fmt, va_list ap);
