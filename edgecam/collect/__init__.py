"""``edgecam collect``: take labelled training photos with the camera that will run the model.

``photos`` saves frames under labels (and runs bursts); ``session`` drives the camera with the
runtime's capture, window and overlay; the browser page is ``edgecam.serving.collect_page``.
"""
