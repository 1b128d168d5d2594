from .coco import COCOEvalResult, COCOParams, coco_evaluate  # noqa: F401,E402
