"""Pure-Python / numpy twin of ``torch.ops.detseg.coco_evaluate`` (pycocotools' COCOeval
evaluate + accumulate), mirroring csrc/include/detseg/coco.h and kept close to pycocotools'
own loops: the test oracle of the C++ evaluator. Same signature as the op."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from .rle import bbox_iou_coco, rle_iou


def _np(t):
    return None if t is None else t.numpy()


def coco_evaluate(gt_image, gt_category, gt_boxes, gt_area, gt_crowd, gt_ids, dt_image, dt_category, dt_boxes,
                  dt_area, dt_scores, gt_counts, gt_offsets, gt_sizes, dt_counts, dt_offsets, dt_sizes, iou_thrs,
                  rec_thrs, max_dets, area_rng, num_images, num_categories, use_cats):
    segm = gt_counts is not None
    gi, gc, garea, gcrowd, gid = (_np(gt_image), _np(gt_category), _np(gt_area).astype(np.float64),
                                  _np(gt_crowd).astype(bool), _np(gt_ids))
    di, dc, darea, dscore = _np(dt_image), _np(dt_category), _np(dt_area).astype(np.float64), _np(dt_scores)
    thrs, recs, arng = _np(iou_thrs), _np(rec_thrs), _np(area_rng).reshape(-1, 2)
    T, R, A, M = len(thrs), len(recs), len(arng), len(max_dets)
    K = num_categories if use_cats else 1
    maxdet = max_dets[-1]

    # Groups keyed (category or 0, image); without categories, members ordered by category
    # then input order (pycocotools concatenates per sorted category id).
    gts, dts = defaultdict(list), defaultdict(list)
    for i in sorted(range(len(gi)), key=lambda i: (0 if use_cats else gc[i], i)):
        gts[(gc[i] if use_cats else 0, gi[i])].append(i)
    for i in sorted(range(len(di)), key=lambda i: (0 if use_cats else dc[i], i)):
        dts[(dc[i] if use_cats else 0, di[i])].append(i)

    def iou_matrix(d, g):
        if segm:
            def sub(counts, offsets, sizes, idx):
                o = offsets.tolist()
                parts = [counts[o[i]:o[i + 1]] for i in idx]
                off = torch.tensor([0] + np.cumsum([len(p) for p in parts]).tolist(), dtype=torch.int64)
                c = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64)
                return c, off, sizes[idx]
            return rle_iou(*sub(dt_counts, dt_offsets, dt_sizes, d), *sub(gt_counts, gt_offsets, gt_sizes, g),
                           torch.from_numpy(gcrowd[g])).numpy()
        return bbox_iou_coco(dt_boxes[d], gt_boxes[g], torch.from_numpy(gcrowd[g])).numpy()

    # evaluateImg for every (group, area range): per detection its outcome per threshold.
    evals = {}
    for key in set(gts) | set(dts):
        g = gts.get(key, [])
        d = dts.get(key, [])
        d = [d[i] for i in np.argsort([-dscore[j] for j in d], kind="mergesort")][:maxdet]
        ious = iou_matrix(d, g) if d and g else np.zeros((len(d), len(g)))
        for a, (lo, hi) in enumerate(arng):
            ig = np.array([gcrowd[j] or garea[j] < lo or garea[j] > hi for j in g], dtype=bool)
            gtind = np.argsort(ig, kind="mergesort")
            gs = [g[i] for i in gtind]
            gig = ig[gtind]
            io = ious[:, gtind] if len(g) else ious
            gtm = np.zeros((T, len(gs)))
            dtm = np.zeros((T, len(d)))
            dtig = np.zeros((T, len(d)), dtype=bool)
            for t, thr in enumerate(thrs):
                for k, _ in enumerate(d):
                    best, m = min([thr, 1 - 1e-10]), -1
                    for j, gj in enumerate(gs):
                        if gtm[t, j] > 0 and not gcrowd[gj]:
                            continue
                        if m > -1 and not gig[m] and gig[j]:
                            break
                        if io[k, j] < best:
                            continue
                        best, m = io[k, j], j
                    if m == -1:
                        continue
                    dtig[t, k] = gig[m]
                    dtm[t, k] = gid[gs[m]]
                    gtm[t, m] = 1
            out = np.array([darea[j] < lo or darea[j] > hi for j in d], dtype=bool).reshape(1, -1)
            dtig = np.logical_or(dtig, np.logical_and(dtm == 0, np.repeat(out, T, 0)))
            evals[key, a] = (dtm, dtig, [dscore[j] for j in d], int(np.count_nonzero(~gig)))

    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    scores = -np.ones((T, R, K, A, M))
    for k in range(K):
        keys = sorted((key for key in set(gts) | set(dts) if key[0] == k), key=lambda x: x[1])
        for a in range(A):
            for m, md in enumerate(max_dets):
                E = [evals[key, a] for key in keys]
                if not E:
                    continue
                sc = np.concatenate([np.asarray(e[2][:md], dtype=np.float64) for e in E])
                inds = np.argsort(-sc, kind="mergesort")
                scs = sc[inds]
                dtm = np.concatenate([e[0][:, :md] for e in E], axis=1)[:, inds]
                dtig = np.concatenate([e[1][:, :md] for e in E], axis=1)[:, inds]
                npig = sum(e[3] for e in E)
                if npig == 0:
                    continue
                tps = np.logical_and(dtm, np.logical_not(dtig))
                fps = np.logical_and(np.logical_not(dtm), np.logical_not(dtig))
                tp_sum = np.cumsum(tps, axis=1).astype(dtype=np.float64)
                fp_sum = np.cumsum(fps, axis=1).astype(dtype=np.float64)
                for t, (tp, fp) in enumerate(zip(tp_sum, fp_sum)):
                    nd = len(tp)
                    rc = tp / npig
                    pr = (tp / (fp + tp + np.spacing(1))).tolist()
                    q, ss = np.zeros((R,)), np.zeros((R,))
                    recall[t, k, a, m] = rc[-1] if nd else 0
                    for i in range(nd - 1, 0, -1):
                        if pr[i] > pr[i - 1]:
                            pr[i - 1] = pr[i]
                    for ri, pi in enumerate(np.searchsorted(rc, recs, side="left")):
                        if pi >= nd:
                            break
                        q[ri] = pr[pi]
                        ss[ri] = scs[pi]
                    precision[t, :, k, a, m] = q
                    scores[t, :, k, a, m] = ss
    return torch.from_numpy(precision), torch.from_numpy(recall), torch.from_numpy(scores)
