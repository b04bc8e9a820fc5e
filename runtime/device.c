/* device.c — msac_device: load the driver, initialise it, open a device's
 * primary context and describe the device; and the plan-target check. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_api.h"

msac_status rt_check_target(const char *target, const char *dev_name, int cc_major, int cc_minor)
{
    /* "sm_" digits [suffix]: the last digit is the minor version. */
    const char *d = target;
    int digits = 0, v = 0;
    if (strncmp(d, "sm_", 3) != 0)
        goto bad;
    for (d += 3; *d >= '0' && *d <= '9' && digits < 4; d++, digits++)
        v = v * 10 + (*d - '0');
    if (digits < 2 || (d[0] && d[1]) || (d[0] && d[0] != 'a' && d[0] != 'f'))
        goto bad;
    int major = v / 10, minor = v % 10;
    char suffix = d[0];
    bool ok = suffix == 'a' ? cc_major == major && cc_minor == minor         /* arch-specific: exact */
              : suffix == 'f' ? cc_major == major && cc_minor >= minor      /* family: same major */
                              : cc_major > major || (cc_major == major && cc_minor >= minor);
    if (!ok)
        return status_make(MSAC_ERR_WRONG_TARGET, "plan is for %s, device %s is sm_%d%d%s", target, dev_name,
                           cc_major, cc_minor,
                           suffix == 'a' ? " (an sm_XYa plan needs exactly that GPU)"
                                         : suffix == 'f' ? " (an sm_XYf plan needs the same GPU family)" : "");
    return NULL;
bad:
    return status_make(MSAC_ERR_BAD_PLAN, "plan target \"%s\" is not of the form sm_XY, sm_XYa or sm_XYf", target);
}

/* cuInit failures: no device vs. no (usable) driver. */
static msac_status init_error(const CudaApi *cu, CUresult r)
{
    char text[256];
    cuda_result_text(cu, r, text, sizeof text);
    if (r == CUDA_ERROR_NO_DEVICE)
        return status_make(MSAC_ERR_NO_DEVICE, "no CUDA device: cuInit: %s (is CUDA_VISIBLE_DEVICES set?)", text);
    if (r == CUDA_ERROR_STUB_LIBRARY)
        return status_make(MSAC_ERR_NO_DRIVER,
                           "no CUDA driver: libcuda is the CUDA toolkit's stub library (is an NVIDIA driver "
                           "installed?)");
    return status_make(MSAC_ERR_NO_DRIVER, "no usable CUDA driver: cuInit: %s", text);
}

msac_status msac_device_open(int ordinal, msac_device **out_device)
{
    if (!out_device)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "msac_device_open: out_device is NULL");
    msac_device *d = calloc(1, sizeof *d);
    if (!d)
        return status_oom();
    const CudaApi *cu = &d->cu;
    msac_status st = cuda_api_load(&d->cu);
    if (st)
        goto fail;
    CUresult r = cu->Init(0);
    if (r != CUDA_SUCCESS) {
        st = init_error(cu, r);
        goto fail;
    }
    int count = 0;
    if ((r = cu->DeviceGetCount(&count)) != CUDA_SUCCESS) {
        st = cuda_error(cu, r, "cuDeviceGetCount");
        goto fail;
    }
    if (ordinal < 0 || ordinal >= count) {
        st = status_make(MSAC_ERR_NO_DEVICE, "no CUDA device %d: %d device%s present", ordinal, count,
                         count == 1 ? "" : "s");
        goto fail;
    }
    if ((r = cu->DeviceGet(&d->dev, ordinal)) != CUDA_SUCCESS) {
        st = cuda_error(cu, r, "cuDeviceGet(%d)", ordinal);
        goto fail;
    }
    msac_device_info *info = &d->info;
    size_t total = 0;
    if ((r = cu->DeviceGetName(info->name, (int)sizeof info->name, d->dev)) != CUDA_SUCCESS ||
        (r = cu->DeviceGetAttribute(&info->cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, d->dev)) !=
            CUDA_SUCCESS ||
        (r = cu->DeviceGetAttribute(&info->cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, d->dev)) !=
            CUDA_SUCCESS ||
        (r = cu->DeviceGetAttribute(&info->sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, d->dev)) !=
            CUDA_SUCCESS ||
        (r = cu->DeviceTotalMem(&total, d->dev)) != CUDA_SUCCESS ||
        (r = cu->DriverGetVersion(&info->driver_version)) != CUDA_SUCCESS) {
        st = cuda_error(cu, r, "querying CUDA device %d", ordinal);
        goto fail;
    }
    info->name[sizeof info->name - 1] = 0;
    info->total_mem = total;
    if ((r = cu->DevicePrimaryCtxRetain(&d->ctx, d->dev)) != CUDA_SUCCESS) {
        d->ctx = NULL;
        st = cuda_error(cu, r, "cuDevicePrimaryCtxRetain(device %d)", ordinal);
        goto fail;
    }
    if ((r = cu->CtxSetCurrent(d->ctx)) != CUDA_SUCCESS) {
        st = cuda_error(cu, r, "cuCtxSetCurrent(device %d)", ordinal);
        goto fail;
    }
    *out_device = d;
    return NULL;
fail:
    msac_device_close(d);
    return st;
}

void msac_device_get_info(const msac_device *dev, msac_device_info *out_info) { *out_info = dev->info; }

int msac_plan_tuned_for(const msac_plan *plan, const msac_device *dev)
{
    const char *t = plan && dev ? msac_plan_meta(plan, "tuned_for") : NULL;
    if (!t)
        return -1;
    char want[192];
    snprintf(want, sizeof want, "%s/%d/%d", dev->info.name, dev->info.sm_count, dev->info.driver_version);
    return !strcmp(t, want);
}

void msac_device_close(msac_device *dev)
{
    if (!dev)
        return;
    if (dev->ctx)
        dev->cu.DevicePrimaryCtxRelease(dev->dev);
    free(dev);
}
