/* emit_plan.h — lowered programs → Plan (see emit_plan.c). */
#pragma once
#include "compile.h"
#include "passes.h"
#include "target.h"

bool emit_plan(Codegen *cg, const Programs *progs, const CompileOptions *o, Plan **out, Diag *d);
/* Appends a meta entry (key, value copied) to a plan emit_plan built. */
void emit_plan_meta(Plan *p, const char *key, const char *value);
/* Appends one more program, `name`, lowered from graph g, to a plan
 * emit_plan built (the per-batch decode variants of compile.c). */
bool emit_plan_program(Codegen *cg, Plan *p, const char *name, const Graph *g, const CompileOptions *o, Diag *d);
