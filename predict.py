"""Predicts the landmarks of the faces in a photo; writes an overlay image and a JSON file.

    python predict.py --checkpoint runs/wflw --image photo.jpg --box 120,80,360,330 --out o.png
    python predict.py --export wflw.jaxexport --image photo.jpg --box 120,80,360,330 --json o.json
    python predict.py --checkpoint runs/wflw --image photo.jpg --detector yunet.onnx

The model comes from a training (or converted) checkpoint or from an artifact of
``python -m awing_jax.export``. Face boxes are ``x1,y1,x2,y2`` in photo pixels, one ``--box`` per
face; without any, a face detector finds them (see awing_jax.predict.detect_faces: OpenCV 5 wheels
bundle none, so pass ``--detector`` a model file or give boxes). The overlay shows the boxes, the
landmarks and the predicted boundary heatmap mapped back onto the photo. Exit status 2 for unusable
input (missing or unreadable image, malformed box, no detector), 1 when no face is found.
"""

from awing_jax.cli.predict import run

if __name__ == "__main__":
    run()
