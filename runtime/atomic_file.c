/* atomic_file.c — see atomic_file.h. */
#include "atomic_file.h"

#include "errbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static bool write_all(int fd, const uint8_t *data, size_t len, const char *tmp, char *err, size_t errlen)
{
    for (size_t off = 0; off < len;) {
        ssize_t k = write(fd, data + off, len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return errbuf_printf(err, errlen, "cannot write %s: %s", tmp, k < 0 ? strerror(errno) : "short write");
        off += (size_t)k;
    }
    return true;
}

/* Makes the rename itself durable (best effort: some filesystems refuse to
 * open or sync a directory). */
static void sync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    if (!dir)
        return;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    free(dir);
}

bool file_write_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen)
{
    size_t tmplen = strlen(path) + 32;
    char *tmp = malloc(tmplen);
    if (!tmp)
        return errbuf_printf(err, errlen, "out of memory writing %s", path);
    snprintf(tmp, tmplen, "%s.tmp.%ld", path, (long)getpid());

    bool ok = false;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        errbuf_printf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    if (!write_all(fd, data, len, tmp, err, errlen)) {
        close(fd);
        unlink(tmp);
        goto done;
    }
    if (fsync(fd) != 0) {
        errbuf_printf(err, errlen, "cannot sync %s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto done;
    }
    if (close(fd) != 0) {
        errbuf_printf(err, errlen, "cannot close %s: %s", tmp, strerror(errno));
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        errbuf_printf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        goto done;
    }
    sync_parent(path);
    ok = true;
done:
    free(tmp);
    return ok;
}

FILE *atomic_stream_open(AtomicStream *s)
{
    *s = (AtomicStream){0};
    s->f = open_memstream(&s->buf, &s->len);
    return s->f;
}

bool atomic_stream_commit(AtomicStream *s, const char *path, char *err, size_t errlen)
{
    bool bad = ferror(s->f) != 0;
    bad |= fclose(s->f) != 0;
    bool ok = !bad ? file_write_atomic(path, s->buf, s->len, err, errlen)
                   : errbuf_printf(err, errlen, "out of memory composing %s", path);
    free(s->buf);
    *s = (AtomicStream){0};
    return ok;
}
