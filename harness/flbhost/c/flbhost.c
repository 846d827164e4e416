/*
 * flbhost: a stand-in for Fluent Bit's Go output proxy, for tests and demos.
 *
 * It loads a Go output plugin (a c-shared .so) the way Fluent Bit does —
 * dlopen, FLBPluginRegister once, then per output instance FLBPluginInit with
 * the config table behind output_get_property, FLBPluginFlushCtx with the
 * context the plugin stored, FLBPluginExitCtx — and is driven by a line
 * protocol on stdin/stdout (see flbhost/README.md). Plugin logs go to the
 * inherited stderr.
 *
 * The structs below mirror the layouts in fluent-bit-go's output/flb_plugin.h
 * and output/flb_output.h; the plugin reads them by offset, so they must not
 * change.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define FLB_ERROR 0
#define FLB_OK 1
#define FLB_RETRY 2

#define FLB_PROXY_OUTPUT_PLUGIN 2
#define FLB_PROXY_GOLANG 11

/* Fluent Bit v5.1.1's struct flb_config_map: the array a plugin registers is
 * walked with this stride. */
struct flb_config_map {
    int type;
    char *name;
    char *def_value;
    int flags;
    int set_property;
    uintptr_t offset;
    char *desc;
    void *value_val;
    char *value_raw;
    void *value_mult;
    void *value_head[2];
    void *head[2];
};

/*
 * The proxy definition of the newest Fluent Bit mimicked. The host allocates
 * only what the mimicked version declares (FLBHOST_FLUENT_BIT_VERSION, see
 * def_size): v5.1.1+ up to config_map, v5.0.0-v5.1.0 up to event_type, older
 * ones up to description. A plugin writing past that is caught by ASan or
 * valgrind, as in the real thing.
 */
struct flb_plugin_proxy_def {
    int type;
    int proxy;
    int flags;
    char *name;
    char *description;
    int event_type;                    /* v5.0.0+ */
    struct flb_config_map *config_map; /* v5.1.1+ */
};

struct flb_api {
    char *(*output_get_property)(char *, void *);
    char *_;
};

struct flb_plugin_proxy_context {
    void *remote_context;
};

/* What o_ins points at here: the instance's config table. Opaque to the plugin. */
struct flb_output_instance {
    int n;
    char **keys;
    char **values;
};

struct flbgo_output_plugin {
    void *_;
    struct flb_api *api;
    struct flb_output_instance *o_ins;
    struct flb_plugin_proxy_context *context;
};

typedef int (*register_fn)(void *);
typedef int (*init_fn)(void *);
typedef int (*flush_ctx_fn)(void *, void *, int, char *);
typedef int (*flush_fn)(void *, int, char *);
typedef int (*exit_ctx_fn)(void *);
typedef int (*exit_fn)(void);
typedef int (*unregister_fn)(void *);
typedef int (*goroutines_fn)(void);

static struct {
    void *dl;
    register_fn reg;
    init_fn init;
    flush_ctx_fn flush_ctx;
    flush_fn flush;
    exit_ctx_fn exit_ctx;
    exit_fn exit;
    unregister_fn unreg;
    goroutines_fn goroutines;
    struct flb_plugin_proxy_def *def;
    int version; /* mimicked Fluent Bit, major*10000 + minor*100 + patch */
} P;

/* parse_version reads "5.1.1" (default: the newest behaviour mimicked). */
static int parse_version(const char *v)
{
    int major = 0, minor = 0, patch = 0;

    if (v == NULL || *v == '\0') {
        return 50101;
    }
    if (sscanf(v, "%d.%d.%d", &major, &minor, &patch) < 2) {
        fprintf(stderr, "flbhost: FLBHOST_FLUENT_BIT_VERSION=%s: want major.minor[.patch]\n", v);
        exit(2);
    }
    return major * 10000 + minor * 100 + patch;
}

/* def_size is sizeof(struct flb_plugin_proxy_def) in the mimicked version. */
static size_t def_size(void)
{
    if (P.version >= 50101) {
        return sizeof(struct flb_plugin_proxy_def);
    }
    if (P.version >= 50000) {
        return offsetof(struct flb_plugin_proxy_def, config_map);
    }
    return offsetof(struct flb_plugin_proxy_def, event_type);
}

/*
 * check_properties does what v5.1.1's flb_output_plugin_property_check does
 * for a plugin that registered a config map: every key core did not take must
 * be in the map (case-insensitively), else the instance fails to start and
 * the key is named. Returns 0 when all are known.
 */
static int check_properties(struct flb_output_instance *cfg);

struct instance {
    char *name;
    struct flb_output_instance cfg;
    struct flb_api *api;
    struct flb_plugin_proxy_context *context;
    struct flbgo_output_plugin *plugin;
    void *remote; /* context->remote_context read after init */
    struct instance *next;
};

static struct instance *instances;

/*
 * Keys Fluent Bit's core takes for itself (flb_output_set_property) and so
 * never shows a plugin; "name" selects the plugin. Compared case-insensitively;
 * "net.", "tls." and "storage." are prefixes.
 */
static const char *core_keys[] = {
    "name", "match", "match_regex", "alias", "log_level", "log_suppress_interval",
    "host", "port", "ipv6", "listen", "keepalive", "mem_buf_limit", "retry_limit",
    "routable", "tag", "threaded", "workers", "tls", NULL,
};

static int is_core_key(const char *key)
{
    int i;

    if (strncasecmp(key, "net.", 4) == 0 || strncasecmp(key, "tls.", 4) == 0 ||
        strncasecmp(key, "storage.", 8) == 0) {
        return 1;
    }
    for (i = 0; core_keys[i]; i++) {
        if (strcasecmp(core_keys[i], key) == 0) {
            return 1;
        }
    }
    return 0;
}

/*
 * As Fluent Bit's output_get_property: case-insensitive lookup; NULL for a key
 * that is unset, set to an empty value, or taken by the core. The first
 * setting of a repeated key wins, as in Fluent Bit's property list.
 */
static char *get_property(char *key, void *o_ins)
{
    struct flb_output_instance *cfg = o_ins;
    char *v = NULL;
    int i;

    if (key == NULL || cfg == NULL || is_core_key(key)) {
        return NULL;
    }
    for (i = 0; i < cfg->n; i++) {
        if (strcasecmp(cfg->keys[i], key) == 0) {
            v = cfg->values[i];
            break;
        }
    }
    if (v != NULL && v[0] == '\0') {
        return NULL;
    }
    return v;
}

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The protocol's own stream: a copy of the original stdout (see main). */
static FILE *proto;

static void reply(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vfprintf(proto, fmt, ap);
    va_end(ap);
    fputc('\n', proto);
    fflush(proto);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes %XX in place; returns -1 on a malformed escape. */
static int pct_decode(char *s)
{
    char *r = s, *w = s;
    int hi, lo;

    while (*r) {
        if (*r == '%') {
            if ((hi = hexval((unsigned char)r[1])) < 0 || (lo = hexval((unsigned char)r[2])) < 0) {
                return -1;
            }
            *w++ = (char)(hi << 4 | lo);
            r += 3;
        }
        else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return 0;
}

static struct instance *find_instance(const char *name)
{
    struct instance *in;

    for (in = instances; in; in = in->next) {
        if (strcmp(in->name, name) == 0) {
            return in;
        }
    }
    return NULL;
}

static void unlink_instance(struct instance *in)
{
    struct instance **pp;

    for (pp = &instances; *pp; pp = &(*pp)->next) {
        if (*pp == in) {
            *pp = in->next;
            return;
        }
    }
}

/*
 * Frees an instance after its exit. The memory is poisoned first so that a
 * plugin still holding the config table or the structs fails loudly rather
 * than by luck.
 */
static void free_instance(struct instance *in)
{
    int i;

    for (i = 0; i < in->cfg.n; i++) {
        memset(in->cfg.keys[i], 0, strlen(in->cfg.keys[i]));
        memset(in->cfg.values[i], 0, strlen(in->cfg.values[i]));
        free(in->cfg.keys[i]);
        free(in->cfg.values[i]);
    }
    free(in->cfg.keys);
    free(in->cfg.values);
    if (in->api) memset(in->api, 0, sizeof(*in->api));
    if (in->context) memset(in->context, 0, sizeof(*in->context));
    if (in->plugin) memset(in->plugin, 0, sizeof(*in->plugin));
    free(in->api);
    free(in->context);
    free(in->plugin);
    free(in->name);
    free(in);
}

static int read_file(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
    FILE *f;
    struct stat st;
    size_t n;

    f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "open %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) != 0) {
        snprintf(err, errlen, "stat %s: %s", path, strerror(errno));
        fclose(f);
        return -1;
    }
    if (st.st_size > 0x7fffffff) {
        snprintf(err, errlen, "%s: %lld bytes do not fit the int length", path, (long long)st.st_size);
        fclose(f);
        return -1;
    }
    /* +1 so an empty chunk still gets a real pointer, as Fluent Bit's would. */
    *buf = malloc((size_t)st.st_size + 1);
    if (*buf == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        fclose(f);
        return -1;
    }
    n = fread(*buf, 1, (size_t)st.st_size, f);
    if (n != (size_t)st.st_size) {
        snprintf(err, errlen, "read %s: short read (%zu of %lld)", path, n, (long long)st.st_size);
        free(*buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    *len = n;
    return 0;
}

static int call_flush(struct instance *in, char *data, size_t len, char *tag)
{
    if (P.flush_ctx) {
        return P.flush_ctx(in->remote, data, (int)len, tag);
    }
    return P.flush(data, (int)len, tag);
}

static int call_exit(struct instance *in)
{
    if (P.exit_ctx) {
        return P.exit_ctx(in->remote);
    }
    return P.exit();
}

static void cmd_init(char **argv, int argc)
{
    struct instance *in;
    int i, rc;
    char *eq;

    if (argc < 2) {
        reply("err usage: init <inst> [key=value ...]");
        return;
    }
    if (pct_decode(argv[1]) != 0) {
        reply("err bad percent-encoding in instance name");
        return;
    }
    if (find_instance(argv[1])) {
        reply("err instance %s already initialised (exit it first)", argv[1]);
        return;
    }
    for (i = 2; i < argc; i++) {
        if (strchr(argv[i], '=') == NULL) {
            reply("err argument %d (%s): want key=value", i - 1, argv[i]);
            return;
        }
    }

    in = calloc(1, sizeof(*in));
    in->name = strdup(argv[1]);
    in->cfg.keys = calloc((size_t)argc, sizeof(char *));
    in->cfg.values = calloc((size_t)argc, sizeof(char *));
    for (i = 2; i < argc; i++) {
        eq = strchr(argv[i], '=');
        *eq = '\0';
        in->cfg.keys[in->cfg.n] = strdup(argv[i]);
        in->cfg.values[in->cfg.n] = strdup(eq + 1);
        if (pct_decode(in->cfg.keys[in->cfg.n]) != 0 || pct_decode(in->cfg.values[in->cfg.n]) != 0) {
            in->cfg.n++;
            reply("err bad percent-encoding in the value of %s", argv[i]);
            free_instance(in);
            return;
        }
        in->cfg.n++;
    }
    in->api = calloc(1, sizeof(*in->api));
    in->api->output_get_property = get_property;
    in->context = calloc(1, sizeof(*in->context));
    in->plugin = calloc(1, sizeof(*in->plugin));
    in->plugin->api = in->api;
    in->plugin->o_ins = &in->cfg;
    in->plugin->context = in->context;

    if (check_properties(&in->cfg) != 0) {
        /* Fluent Bit destroys the instance before the plugin's init. */
        free_instance(in);
        reply("ok -1");
        return;
    }
    rc = P.init(in->plugin);
    /*
     * Fluent Bit treats rc <= 0 as a failed init and drops the instance
     * without calling exit; so do we.
     */
    if (rc <= 0) {
        free_instance(in);
        reply("ok %d", rc);
        return;
    }
    in->remote = in->context->remote_context;
    in->next = instances;
    instances = in;
    reply("ok %d", rc);
}

static void cmd_flush(char **argv, int argc)
{
    struct instance *in;
    char *buf = NULL, *tag;
    size_t len = 0;
    char err[512];
    int rc;

    if (argc != 4) {
        reply("err usage: flush <inst> <tag> <path>");
        return;
    }
    if (pct_decode(argv[1]) || pct_decode(argv[2]) || pct_decode(argv[3])) {
        reply("err bad percent-encoding");
        return;
    }
    in = find_instance(argv[1]);
    if (in == NULL) {
        reply("err no instance %s", argv[1]);
        return;
    }
    if (read_file(argv[3], &buf, &len, err, sizeof(err)) != 0) {
        reply("err %s", err);
        return;
    }
    tag = strdup(argv[2]);
    rc = call_flush(in, buf, len, tag);
    /* Fluent Bit releases chunk and tag after the flush; poison them to catch reuse. */
    memset(buf, 0xa5, len);
    free(buf);
    memset(tag, 0xa5, strlen(tag));
    free(tag);
    reply("ok %d", rc);
}

struct pflush_job {
    struct instance *in;
    char *tag;
    char *buf;
    size_t len;
    int rc;
};

static void *pflush_thread(void *arg)
{
    struct pflush_job *j = arg;

    j->rc = call_flush(j->in, j->buf, j->len, j->tag);
    return NULL;
}

static void cmd_pflush(char **argv, int argc)
{
    struct instance *in;
    struct pflush_job *jobs;
    pthread_t *threads;
    char err[512];
    char *out, *p;
    int i, n, started, ok = 1;

    if (argc < 4) {
        reply("err usage: pflush <inst> <tag> <path> [<path>...]");
        return;
    }
    for (i = 1; i < argc; i++) {
        if (pct_decode(argv[i])) {
            reply("err bad percent-encoding");
            return;
        }
    }
    in = find_instance(argv[1]);
    if (in == NULL) {
        reply("err no instance %s", argv[1]);
        return;
    }
    n = argc - 3;
    jobs = calloc((size_t)n, sizeof(*jobs));
    threads = calloc((size_t)n, sizeof(*threads));
    for (i = 0; i < n; i++) {
        jobs[i].in = in;
        /* Each worker gets its own tag copy, as each Fluent Bit task has. */
        jobs[i].tag = strdup(argv[2]);
        if (read_file(argv[3 + i], &jobs[i].buf, &jobs[i].len, err, sizeof(err)) != 0) {
            ok = 0;
            break;
        }
    }
    if (ok) {
        for (started = 0; started < n; started++) {
            int perr = pthread_create(&threads[started], NULL, pflush_thread, &jobs[started]);
            if (perr != 0) {
                snprintf(err, sizeof(err), "pthread_create: %s", strerror(perr));
                ok = 0;
                break;
            }
        }
        for (i = 0; i < started; i++) {
            pthread_join(threads[i], NULL);
        }
    }
    out = calloc((size_t)n, 16);
    p = out;
    for (i = 0; i < n; i++) {
        p += sprintf(p, " %d", jobs[i].rc);
        if (jobs[i].buf) {
            memset(jobs[i].buf, 0xa5, jobs[i].len);
            free(jobs[i].buf);
        }
        if (jobs[i].tag) {
            memset(jobs[i].tag, 0xa5, strlen(jobs[i].tag));
            free(jobs[i].tag);
        }
    }
    if (ok) {
        reply("ok%s", out);
    }
    else {
        /* Flushes already started ran to completion; their results are lost. */
        reply("err %s", err);
    }
    free(out);
    free(jobs);
    free(threads);
}

static void cmd_exit(char **argv, int argc)
{
    struct instance *in;
    int rc;

    if (argc != 2) {
        reply("err usage: exit <inst>");
        return;
    }
    if (pct_decode(argv[1])) {
        reply("err bad percent-encoding");
        return;
    }
    in = find_instance(argv[1]);
    if (in == NULL) {
        reply("err no instance %s", argv[1]);
        return;
    }
    rc = call_exit(in);
    unlink_instance(in);
    free_instance(in);
    reply("ok %d", rc);
}

/* Shutdown as Fluent Bit does it: exit every live instance, then unregister. */
static void shutdown_plugin(void)
{
    struct instance *in;

    while ((in = instances) != NULL) {
        call_exit(in);
        unlink_instance(in);
        free_instance(in);
    }
    if (P.unreg) {
        P.unreg(P.def);
    }
}

static int load(const char *path)
{
    int rc;

    P.dl = dlopen(path, RTLD_LAZY);
    if (P.dl == NULL) {
        fprintf(stderr, "flbhost: dlopen %s: %s\n", path, dlerror());
        return -1;
    }
    P.reg = (register_fn)dlsym(P.dl, "FLBPluginRegister");
    P.init = (init_fn)dlsym(P.dl, "FLBPluginInit");
    P.flush_ctx = (flush_ctx_fn)dlsym(P.dl, "FLBPluginFlushCtx");
    P.flush = (flush_fn)dlsym(P.dl, "FLBPluginFlush");
    P.exit_ctx = (exit_ctx_fn)dlsym(P.dl, "FLBPluginExitCtx");
    P.exit = (exit_fn)dlsym(P.dl, "FLBPluginExit");
    P.unreg = (unregister_fn)dlsym(P.dl, "FLBPluginUnregister");
    P.goroutines = (goroutines_fn)dlsym(P.dl, "KeyalertGoroutines");
    if (P.reg == NULL || P.init == NULL) {
        fprintf(stderr, "flbhost: %s: FLBPluginRegister or FLBPluginInit missing\n", path);
        return -1;
    }
    if (P.flush_ctx == NULL && P.flush == NULL) {
        fprintf(stderr, "flbhost: %s: neither FLBPluginFlushCtx nor FLBPluginFlush exported\n", path);
        return -1;
    }
    if (P.exit_ctx == NULL && P.exit == NULL) {
        fprintf(stderr, "flbhost: %s: neither FLBPluginExitCtx nor FLBPluginExit exported\n", path);
        return -1;
    }
    /* Exactly what the mimicked version allocates (flb_calloc of its struct). */
    P.def = calloc(1, def_size());
    rc = P.reg(P.def);
    if (rc == -1) {
        fprintf(stderr, "flbhost: FLBPluginRegister returned -1\n");
        return -1;
    }
    if (P.def->type != FLB_PROXY_OUTPUT_PLUGIN || P.def->proxy != FLB_PROXY_GOLANG) {
        fprintf(stderr, "flbhost: registered type=%d proxy=%d, want output (%d) golang (%d)\n",
                P.def->type, P.def->proxy, FLB_PROXY_OUTPUT_PLUGIN, FLB_PROXY_GOLANG);
        return -1;
    }
    if (P.def->name == NULL || P.def->name[0] == '\0') {
        fprintf(stderr, "flbhost: plugin registered without a name\n");
        return -1;
    }
    return 0;
}

static int check_properties(struct flb_output_instance *cfg)
{
    struct flb_config_map *m;
    int i, found;

    if (P.version < 50101 || P.def->config_map == NULL) {
        return 0;
    }
    for (i = 0; i < cfg->n; i++) {
        if (is_core_key(cfg->keys[i])) {
            continue;
        }
        found = 0;
        for (m = P.def->config_map; m->name != NULL; m++) {
            if (strcasecmp(m->name, cfg->keys[i]) == 0) {
                found = 1;
                break;
            }
        }
        if (!found) {
            fprintf(stderr, "[error] [config] %s: unknown configuration property '%s'\n",
                    P.def->name, cfg->keys[i]);
            return -1;
        }
    }
    return 0;
}

/* cmd_help answers what `fluent-bit -o NAME -h` would list: the config map's keys. */
static void cmd_help(void)
{
    struct flb_config_map *m;
    char buf[8192];
    size_t off = 0;

    if (P.version < 50101 || P.def->config_map == NULL) {
        reply("err no config map");
        return;
    }
    buf[0] = '\0';
    for (m = P.def->config_map; m->name != NULL && off < sizeof(buf) - 1; m++) {
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s", off ? "," : "", m->name);
        if (m->type != 0 || m->set_property != 0 || m->desc == NULL) {
            reply("err config map entry %s: type %d set_property %d desc %p", m->name, m->type,
                  m->set_property, (void *)m->desc);
            return;
        }
    }
    reply("ok %s", buf);
}

#define MAX_ARGS 4096

int main(int argc, char **argv)
{
    char *line = NULL, *tok, *save;
    char **args;
    size_t cap = 0;
    ssize_t n;
    int nargs, fd;

    if (argc != 2) {
        fprintf(stderr, "usage: %s <plugin.so>\n", argv[0]);
        return 2;
    }
    /*
     * Answers go to a private copy of stdout, and fd 1 becomes stderr, so
     * whatever the plugin prints (Fluent Bit's stdout is a log) lands with
     * its logs instead of corrupting the protocol.
     */
    fd = dup(STDOUT_FILENO);
    if (fd < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0 || (proto = fdopen(fd, "w")) == NULL) {
        fprintf(stderr, "flbhost: redirecting stdout: %s\n", strerror(errno));
        return 1;
    }
    P.version = parse_version(getenv("FLBHOST_FLUENT_BIT_VERSION"));
    if (load(argv[1]) != 0) {
        return 1;
    }
    /* One greeting line so a driver knows registration succeeded. */
    reply("ready %s", P.def->name);

    args = calloc(MAX_ARGS, sizeof(char *));
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        nargs = 0;
        for (tok = strtok_r(line, " \t\r\n", &save); tok && nargs < MAX_ARGS;
             tok = strtok_r(NULL, " \t\r\n", &save)) {
            args[nargs++] = tok;
        }
        if (nargs == 0) {
            continue;
        }
        if (tok != NULL) {
            reply("err more than %d arguments", MAX_ARGS);
        }
        else if (strcmp(args[0], "init") == 0) {
            cmd_init(args, nargs);
        }
        else if (strcmp(args[0], "flush") == 0) {
            cmd_flush(args, nargs);
        }
        else if (strcmp(args[0], "pflush") == 0) {
            cmd_pflush(args, nargs);
        }
        else if (strcmp(args[0], "exit") == 0) {
            cmd_exit(args, nargs);
        }
        else if (strcmp(args[0], "help") == 0) {
            cmd_help();
        }
        else if (strcmp(args[0], "goroutines") == 0) {
            if (P.goroutines == NULL) {
                reply("err unsupported");
            }
            else {
                reply("ok %d", P.goroutines());
            }
        }
        else if (strcmp(args[0], "quit") == 0) {
            shutdown_plugin();
            reply("ok");
            break;
        }
        else {
            reply("err unknown command %s", args[0]);
        }
    }
    if (n < 0) {
        /* stdin closed: shut down the same way as quit. */
        shutdown_plugin();
    }
    free(args);
    free(line);
    return 0;
}
