"""``edgecam collect``: take labelled training photos with the camera that will run the model.

``photos`` saves frames under labels (and runs bursts); ``session`` drives the camera with the
runtime's capture, window and overlay; the browser page is ``edgecam.serving.collect_page``.
``review`` files the frames ``edgecam run --keep`` kept into the same label folders
(``edgecam review``; its page is ``edgecam.serving.review_page``).
"""
