"""AP@0.5 through pycocotools' COCOeval (class-agnostic: every sprite is one class)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
from fedlab.clients.arena.model import Detections


def average_precision(
    detections: Sequence[Detections], ground_truth: Sequence[np.ndarray], iou: float = 0.5
) -> float:
    """COCO AP at IoU ``iou`` (area "all", 100 detections per frame) over all frames.

    Parameters
    ----------
    detections : sequence of Detections
        One per frame.
    ground_truth : sequence of numpy.ndarray
        Per frame, ``(n, 4)`` xyxy boxes.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} frames of detections for {len(ground_truth)} of truth")
    images, annotations, results = [], [], []
    for i, (det, gt) in enumerate(zip(detections, ground_truth, strict=True)):
        images.append({"id": i, "width": 1, "height": 1})
        for box in np.asarray(gt).reshape(-1, 4):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": 1,
                                "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h,
                                "iscrowd": 0})  # fmt: skip
        for box, score in zip(det.boxes, det.scores, strict=True):
            results.append({"image_id": i, "category_id": 1, "score": float(score),
                            "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]),
                                     float(box[3] - box[1])]})  # fmt: skip
    if not annotations:
        raise ValueError("no ground-truth boxes: AP is undefined")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": annotations,
                        "categories": [{"id": 1, "name": "sprite"}]}  # fmt: skip
        coco.createIndex()
        if not results:
            return 0.0
        dets = coco.loadRes(results)
        evaluator = COCOeval(coco, dets, "bbox")
        evaluator.params.iouThrs = np.array([iou])
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"][0, :, 0, 0, -1]  # iou, recall, class, area all, 100
    valid = precision[precision > -1]
    return float(valid.mean()) if len(valid) else 0.0
