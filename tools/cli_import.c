/* cli_import.c — `msac import hf DIR -o MODEL.yaml`: a Hugging Face
 * Mamba2ForCausalLM or MambaForCausalLM checkpoint directory to an msac model.
 *
 * Reads DIR/config.json and writes the YAML (docs/models.md): vocab_size,
 * hidden_size → d_model, layer_norm_epsilon → norm_eps, tie_word_embeddings,
 * and one mamba2 layer repeated num_hidden_layers times with state_size →
 * d_state, head_dim → headdim, expand, n_groups → ngroups, conv_kernel →
 * d_conv, chunk_size, use_conv_bias → conv_bias, time_step_min/max →
 * dt_init_range and a finite time_step_limit → dt_limit. Configurations msac
 * cannot represent are refused with the field's name (use_bias, rms_norm
 * false, num_heads · head_dim ≠ expand · hidden_size, another architecture).
 * A MambaForCausalLM config gives mamba1 layers: state_size → d_state,
 * expand, conv_kernel → d_conv, time_step_rank ("auto" = ⌈hidden_size/16⌉)
 * → dt_rank, use_conv_bias → conv_bias, time_step_min/max → dt_init_range
 * (refused: use_bias, intermediate_size ≠ expand · hidden_size).
 *
 * Weight names: msac's are Hugging Face's (docs/models.md), so the map is the
 * identity, which the YAML's header states. When DIR holds safetensors
 * (model.safetensors, or model-*.safetensors shards), every tensor the model
 * needs is checked in them now (present, shape; dtype F32/BF16/F16), so that
 * `msac run --weights` later loads them unchanged. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "cli.h"
#include "compile.h"
#include "frontend.h"
#include "json.h"
#include "msac/runtime.h"

static const char import_usage[] =
    "usage: msac import hf DIR -o MODEL.yaml [--name NAME]\n"
    "Writes an msac model for the Hugging Face Mamba2ForCausalLM or MambaForCausalLM in DIR\n"
    "(DIR/config.json); checks DIR's safetensors against it when there are any. Weight names are\n"
    "Hugging Face's.\n";

/* A number field of the config; *present false when absent. */
static bool num_field(const JsonValue *cfg, const char *key, double *out, bool *present, const char *path)
{
    const JsonValue *v = json_get(cfg, key);
    *present = v != NULL;
    if (!v)
        return true;
    if (v->type != JSON_NUMBER) {
        fprintf(stderr, "msac import: %s: field '%s' must be a number (got %s)\n", path, key, json_type_name(v->type));
        return false;
    }
    *out = v->num;
    return true;
}

static bool int_field(const JsonValue *cfg, const char *key, bool required, long long def, long long *out,
                      const char *path)
{
    double x = (double)def;
    bool present;
    if (!num_field(cfg, key, &x, &present, path))
        return false;
    if (!present && required) {
        fprintf(stderr, "msac import: %s: field '%s' missing\n", path, key);
        return false;
    }
    if (x != floor(x) || x < 0 || x > 1e9) {
        fprintf(stderr, "msac import: %s: field '%s' must be a whole number >= 0, got %g\n", path, key, x);
        return false;
    }
    *out = (long long)x;
    return true;
}

static bool bool_field(const JsonValue *cfg, const char *key, bool def, bool *out, const char *path)
{
    const JsonValue *v = json_get(cfg, key);
    *out = def;
    if (!v)
        return true;
    if (v->type != JSON_BOOL) {
        fprintf(stderr, "msac import: %s: field '%s' must be true or false (got %s)\n", path, key,
                json_type_name(v->type));
        return false;
    }
    *out = v->boolean;
    return true;
}

/* The YAML of a MambaForCausalLM config (HF MambaConfig's defaults where a field is absent;
 * tie_word_embeddings defaults to true, as PretrainedConfig's). */
/* The lines every imported model starts with: where it came from, and the model-level keys. */
static void write_head(FILE *f, const char *name, const char *path, const char *arch, long long vocab,
                       long long d_model, double eps, bool tie)
{
    fprintf(f, "# %s — imported by `msac import hf` from %s (%s).\n", name, path, arch);
    fprintf(f, "# Weight names are Hugging Face's (docs/models.md): the map is the identity.\n");
    fprintf(f, "name: %s\nvocab_size: %lld\nd_model: %lld\nnorm_eps: %.9g\ntie_embeddings: %s\n\n", name, vocab,
            d_model, eps, tie ? "true" : "false");
}

static bool write_mamba1_yaml(FILE *f, const JsonValue *cfg, const char *path, const char *name)
{
    long long vocab, d_model, layers, d_state, expand, d_conv, rank, inter;
    bool use_bias, conv_bias, tie;
    double eps = 1e-5, tmin = 0.001, tmax = 0.1;
    bool has;
    if (!int_field(cfg, "vocab_size", true, 0, &vocab, path) || !int_field(cfg, "hidden_size", true, 0, &d_model, path) ||
        !int_field(cfg, "num_hidden_layers", true, 0, &layers, path) ||
        !int_field(cfg, "state_size", false, 16, &d_state, path) || !int_field(cfg, "expand", false, 2, &expand, path) ||
        !int_field(cfg, "conv_kernel", false, 4, &d_conv, path) ||
        !int_field(cfg, "intermediate_size", false, expand * d_model, &inter, path) ||
        !bool_field(cfg, "use_bias", false, &use_bias, path) || !bool_field(cfg, "use_conv_bias", true, &conv_bias, path) ||
        !bool_field(cfg, "tie_word_embeddings", true, &tie, path) ||
        !num_field(cfg, "layer_norm_epsilon", &eps, &has, path) || !num_field(cfg, "time_step_min", &tmin, &has, path) ||
        !num_field(cfg, "time_step_max", &tmax, &has, path))
        return false;
    rank = (d_model + 15) / 16; /* "auto": ceil(hidden_size / 16) */
    const JsonValue *tr = json_get(cfg, "time_step_rank");
    if (tr && !(tr->type == JSON_STRING && !strcmp(tr->str, "auto")) &&
        !int_field(cfg, "time_step_rank", false, rank, &rank, path))
        return false;
    if (use_bias) {
        fprintf(stderr, "msac import: %s: use_bias true (biases on in_proj/out_proj) is not supported\n", path);
        return false;
    }
    if (inter != expand * d_model) {
        fprintf(stderr, "msac import: %s: intermediate_size = %lld, but expand * hidden_size = %lld\n", path, inter,
                expand * d_model);
        return false;
    }
    write_head(f, name, path, "MambaForCausalLM", vocab, d_model, eps, tie);
    fprintf(f, "mamba1:\n  d_state: %lld\n  expand: %lld\n  d_conv: %lld\n  dt_rank: %lld\n  conv_bias: %s\n"
               "  dt_init_range: [%.9g, %.9g]\n",
            d_state, expand, d_conv, rank, conv_bias ? "true" : "false", tmin, tmax);
    fprintf(f, "\nlayers:\n  - kind: mamba1\n    repeat: %lld\n", layers);
    return true;
}

/* Writes the YAML for config cfg (read from path) into f; false with a message. The
 * architecture (else model_type "mamba") picks Mamba1; Mamba2 otherwise. */
static bool write_yaml(FILE *f, const JsonValue *cfg, const char *path, const char *name)
{
    const JsonValue *arch = json_get(cfg, "architectures"), *mt = json_get(cfg, "model_type");
    const char *a = arch && arch->type == JSON_ARRAY && arch->len >= 1 && arch->items[0].type == JSON_STRING
                        ? arch->items[0].str
                        : NULL;
    if (a && strcmp(a, "Mamba2ForCausalLM") && strcmp(a, "MambaForCausalLM")) {
        fprintf(stderr, "msac import: %s: architecture '%s' is neither Mamba2ForCausalLM nor MambaForCausalLM\n",
                path, a);
        return false;
    }
    if (a ? !strcmp(a, "MambaForCausalLM") : mt && mt->type == JSON_STRING && !strcmp(mt->str, "mamba"))
        return write_mamba1_yaml(f, cfg, path, name);
    long long vocab, d_model, layers, d_state, headdim, heads, expand, groups, d_conv, chunk;
    bool use_bias, conv_bias, rms_norm, tie;
    double eps = 1e-5, tmin = 0.001, tmax = 0.1;
    bool has;
    if (!int_field(cfg, "vocab_size", true, 0, &vocab, path) || !int_field(cfg, "hidden_size", true, 0, &d_model, path) ||
        !int_field(cfg, "num_hidden_layers", true, 0, &layers, path) ||
        !int_field(cfg, "state_size", false, 128, &d_state, path) ||
        !int_field(cfg, "head_dim", false, 64, &headdim, path) || !int_field(cfg, "expand", false, 2, &expand, path) ||
        !int_field(cfg, "num_heads", false, expand * d_model / (headdim ? headdim : 1), &heads, path) ||
        !int_field(cfg, "n_groups", false, 1, &groups, path) || !int_field(cfg, "conv_kernel", false, 4, &d_conv, path) ||
        !int_field(cfg, "chunk_size", false, 256, &chunk, path) || !bool_field(cfg, "use_bias", false, &use_bias, path) ||
        !bool_field(cfg, "use_conv_bias", true, &conv_bias, path) || !bool_field(cfg, "rms_norm", true, &rms_norm, path) ||
        !bool_field(cfg, "tie_word_embeddings", false, &tie, path) ||
        !num_field(cfg, "layer_norm_epsilon", &eps, &has, path) || !num_field(cfg, "time_step_min", &tmin, &has, path) ||
        !num_field(cfg, "time_step_max", &tmax, &has, path))
        return false;
    if (use_bias) {
        fprintf(stderr, "msac import: %s: use_bias true (biases on in_proj/out_proj) is not supported\n", path);
        return false;
    }
    if (!rms_norm) {
        fprintf(stderr, "msac import: %s: rms_norm false (no gated norm) is not supported\n", path);
        return false;
    }
    if (heads * headdim != expand * d_model) {
        fprintf(stderr, "msac import: %s: num_heads * head_dim = %lld, but expand * hidden_size = %lld\n", path,
                heads * headdim, expand * d_model);
        return false;
    }
    double lim[2] = {0.0, INFINITY};
    const JsonValue *tl = json_get(cfg, "time_step_limit");
    if (tl) {
        if (tl->type != JSON_ARRAY || tl->len != 2 || tl->items[0].type != JSON_NUMBER ||
            (tl->items[1].type != JSON_NUMBER && tl->items[1].type != JSON_NULL)) {
            fprintf(stderr, "msac import: %s: field 'time_step_limit' must be [min, max]\n", path);
            return false;
        }
        lim[0] = tl->items[0].num;
        lim[1] = tl->items[1].type == JSON_NUMBER ? tl->items[1].num : INFINITY;
    }
    write_head(f, name, path, "Mamba2ForCausalLM", vocab, d_model, eps, tie);
    fprintf(f, "mamba2:\n  d_state: %lld\n  headdim: %lld\n  expand: %lld\n  ngroups: %lld\n  d_conv: %lld\n"
               "  chunk_size: %lld\n  conv_bias: %s\n  dt_init_range: [%.9g, %.9g]\n",
            d_state, headdim, expand, groups, d_conv, chunk, conv_bias ? "true" : "false", tmin, tmax);
    if (isfinite(lim[1]))
        fprintf(f, "  dt_limit: [%.9g, %.9g]\n", lim[0], lim[1]);
    fprintf(f, "\nlayers:\n  - kind: mamba2\n    repeat: %lld\n", layers);
    return true;
}

/* Compiles the model in `yaml` (it must compile before it is written), then
 * checks every weight it needs against the safetensors files of dir, if
 * any; returns 0 ok, 1 an error (message printed). */
static int check_model(const char *dir, const char *yaml, const char *ypath)
{
    CompileOptions o;
    compile_options_init(&o);
    Plan *p = NULL;
    Diag d = {0};
    if (!msac_compile(yaml, ypath, &o, &p, &d)) {
        diag_print(&d, yaml, stderr);
        return 1;
    }
    uint8_t *bytes = NULL;
    size_t len = 0;
    msac_plan *plan = NULL;
    int rc = 1;
    char files[16][1024];
    int nf = 0;
    DIR *dp = opendir(dir);
    for (struct dirent *e; dp && (e = readdir(dp)) && nf < 16;) {
        size_t n = strlen(e->d_name);
        if (n > 12 && !strcmp(e->d_name + n - 12, ".safetensors") && !strncmp(e->d_name, "model", 5))
            snprintf(files[nf++], sizeof files[0], "%s/%s", dir, e->d_name);
    }
    if (dp)
        closedir(dp);
    if (!nf) {
        printf("no model*.safetensors in %s: weights not checked\n", dir);
        rc = 0;
        goto out;
    }
    if (!plan_write(p, &bytes, &len) || msac_plan_load_memory(bytes, len, &plan)) {
        fprintf(stderr, "msac import: cannot load the compiled model\n");
        goto out;
    }
    msac_weights *w[16] = {0}; /* each shard opened once */
    for (int f = 0; f < nf; f++) {
        msac_status st = msac_weights_open(files[f], &w[f]);
        if (st) {
            fprintf(stderr, "msac import: %s\n", msac_status_message(st));
            msac_status_free(st);
            goto close;
        }
    }
    msac_plan_info pi;
    msac_plan_get_info(plan, &pi);
    int found = 0;
    for (int i = 0; i < pi.num_weights; i++) {
        msac_weight_info wi;
        msac_plan_weight_info(plan, i, &wi);
        size_t n = 1;
        for (int k = 0; k < wi.ndim; k++)
            n *= (size_t)wi.dims[k];
        float *vals = malloc(n * sizeof *vals);
        if (!vals)
            goto close;
        msac_status last = NULL;
        bool ok = false;
        for (int f = 0; f < nf && !ok; f++) { /* the shard that holds it */
            msac_status_free(last);
            last = msac_plan_weight_values(plan, i, w[f], 0, vals);
            ok = !last;
        }
        free(vals);
        if (!ok) {
            fprintf(stderr, "msac import: %s\n", msac_status_message(last));
            msac_status_free(last);
            goto close;
        }
        found++;
    }
    printf("weights: all %d tensors found in %d safetensors file%s with the shapes the model needs\n", found, nf,
           nf == 1 ? "" : "s");
    rc = 0;
close:
    for (int f = 0; f < nf; f++)
        msac_weights_close(w[f]);
out:
    msac_plan_free(plan);
    free(bytes);
    plan_free(p);
    return rc;
}

/* Python's json writes float("inf") as a bare Infinity (Hugging Face's
 * time_step_limit is (0.0, inf)); RFC 8259 has none. Outside strings, each
 * [-]Infinity / NaN becomes null (padded to the same length), which the
 * fields that may hold it read as "no limit". */
static void python_floats_to_null(char *t)
{
    bool str = false;
    for (char *c = t; *c; c++) {
        if (str) {
            if (*c == '\\' && c[1])
                c++;
            else if (*c == '"')
                str = false;
            continue;
        }
        if (*c == '"') {
            str = true;
            continue;
        }
        size_t n = !strncmp(c, "-Infinity", 9) ? 9 : !strncmp(c, "Infinity", 8) ? 8 : !strncmp(c, "NaN", 3) ? 3 : 0;
        if (n) {
            memcpy(c, "null", 4);
            memset(c + 4, ' ', n - 4);
            c += n - 1;
        }
    }
}

int cli_import(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL, *name = NULL;
    if (argc >= 2 && !strcmp(argv[1], "--help")) {
        fputs(import_usage, stdout);
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "hf")) {
        fprintf(stderr, "msac import: only 'hf' (a Hugging Face checkpoint directory) is supported\n%s", import_usage);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--name") && i + 1 < argc)
            name = argv[++i];
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else {
            fprintf(stderr, "msac import: unexpected argument '%s'\n%s", argv[i], import_usage);
            return 2;
        }
    }
    if (!dir || !out) {
        fputs(import_usage, stderr);
        return 2;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    Diag d = {0};
    char *text = frontend_read_file(path, &d);
    if (!text) {
        fprintf(stderr, "msac import: %s\n", d.msg);
        return 1;
    }
    JsonValue cfg;
    char err[512];
    int rc = 1;
    python_floats_to_null(text);
    if (!json_parse(text, strlen(text), &cfg, err, sizeof err)) {
        fprintf(stderr, "msac import: %s: %s\n", path, err);
        free(text);
        return 1;
    }
    if (cfg.type != JSON_OBJECT) {
        fprintf(stderr, "msac import: %s: not a JSON object\n", path);
        goto done;
    }
    char base[256];
    if (!name) { /* the directory's last component */
        snprintf(base, sizeof base, "%s", dir);
        size_t n = strlen(base);
        while (n > 1 && base[n - 1] == '/')
            base[--n] = 0;
        const char *slash = strrchr(base, '/');
        name = slash ? slash + 1 : base;
    }
    AtomicStream as;
    FILE *f = atomic_stream_open(&as);
    if (!f) {
        fprintf(stderr, "msac import: out of memory\n");
        goto done;
    }
    bool ok = write_yaml(f, &cfg, path, name);
    char *yaml = NULL;
    if (ok) { /* the model must compile before it is written */
        fflush(f);
        yaml = strndup(as.buf, as.len);
    }
    if (!ok) {
        fclose(f);
        free(as.buf);
        goto done;
    }
    if (check_model(dir, yaml, out)) {
        fclose(f);
        free(as.buf);
        free(yaml);
        goto done;
    }
    free(yaml);
    if (!atomic_stream_commit(&as, out, err, sizeof err)) {
        fprintf(stderr, "msac import: %s\n", err);
        goto done;
    }
    printf("wrote %s (model '%s')\n", out, name);
    rc = 0;
done:
    json_free(&cfg);
    free(text);
    return rc;
}
