/* SPDX-License-Identifier: GPL-2.0-only */
/* The C declarations dm_rs binds to, run through the kernel's bindgen by Kbuild. */
#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <linux/dm-io.h>
#include <linux/dm-kcopyd.h>
#include <linux/completion.h>
#include <linux/moduleparam.h>
#include <linux/uio.h>
#include <linux/workqueue.h>
#include <linux/delay.h>
#include <linux/mm.h>
