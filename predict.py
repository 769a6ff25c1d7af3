"""Landmarks of the faces in photos or a video; overlays, JSON, CSV and aligned faces.

    python predict.py --checkpoint runs/wflw --image photo.jpg --out o.png --json o.json
    python predict.py --checkpoint runs/wflw --image photos/ --json all.json --csv all.csv
    python predict.py --export wflw.jaxexport --image photo.jpg --box 120,80,360,330
    python predict.py --checkpoint runs/wflw --video clip.mp4 --out overlay.mp4 --json clip.json

Faces are found by a detector (dlib's HOG detector by default) unless ``--box`` gives them; the
flags and outputs are described in awing_jax/cli/predict.py and docs/prediction.md.
"""

from awing_jax.cli.predict import run

if __name__ == "__main__":
    run()
