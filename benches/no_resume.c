/* LD_PRELOAD shim for wrk (benches/compare.sh tls-full): every new connection makes a full TLS
 * handshake. wrk reuses one SSL object per connection slot and SSL_clear keeps its session, so
 * each reconnect would resume it; this SSL_connect drops that session before a handshake
 * starts, then calls OpenSSL's own. wrk links libssl dynamically, so this symbol wins.
 * Build: cc -shared -fPIC -O2 -o no_resume.so benches/no_resume.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

typedef int (*ssl_fn)(void *ssl);
typedef int (*set_session_fn)(void *ssl, void *session);

int SSL_connect(void *ssl)
{
    static ssl_fn real_connect, in_before;
    static set_session_fn set_session;
    if (real_connect == NULL) {
        real_connect = (ssl_fn)dlsym(RTLD_NEXT, "SSL_connect");
        in_before = (ssl_fn)dlsym(RTLD_NEXT, "SSL_in_before");
        set_session = (set_session_fn)dlsym(RTLD_NEXT, "SSL_set_session");
    }
    /* Only before the handshake starts: wrk calls SSL_connect again while it is under way. */
    if (in_before != NULL && set_session != NULL && in_before(ssl))
        set_session(ssl, NULL);
    return real_connect(ssl);
}
