"""Data checks of every builder: strict decoding, plausible annotations, empty splits, the build
report and the contact sheets of ``python -m datasets.show``, on fixture trees written here."""

import json
import os

import cv2
import numpy as np
import pytest
import tensorflow_datasets as tfds

from awing_jax import crop
from datasets import build, common, show
from datasets.aflw19.aflw19 import Aflw19
from datasets.cofw.cofw import Cofw
from datasets.w300 import w300
from datasets.wflw import wflw
from tests.test_datasets_cofw_aflw import NUM_TRAIN, cofw_faces, write_aflw, write_cofw
from tests.test_datasets_wflw_w300 import (
    SIZE,
    WFLW_ANNOTATIONS,
    annotation_path,
    edit_line,
    prepare,
    write_w300,
    write_wflw,
)

# The photo of WFLW train lines 1 and 2.
WFLW_PHOTO = os.path.join("WFLW_images", "0--Parade", "0_Parade_marchingband_1_5.jpg")


def textured(height=60, width=80, seed=0):
    """A smooth random colour photo: enough entropy-coded data to cut in the middle."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (height // 8, width // 8, 3)).astype(np.uint8)
    return cv2.resize(blocks, (width, height), interpolation=cv2.INTER_LINEAR)


def jpeg(image, *params):
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90, *params])
    assert ok
    return data.tobytes()


def entropy_span(data):
    """[start, end) of the entropy-coded data of a baseline JPEG: after the SOS header, before
    the EOI marker."""
    sos = data.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big"), len(data) - 2


def damaged_jpegs(data):
    start, end = entropy_span(data)
    middle = (start + end) // 2
    flipped = bytearray(data)
    for k in range(start + 10, end - 10, (end - start) // 8):
        flipped[k] ^= 0xFF
    return {
        "cut to a third": data[:len(data) // 3],
        "cut in the entropy data, EOI kept": data[:middle] + data[-2:],
        "a quarter of the entropy data dropped": data[:middle] + data[middle + (end - start) // 4:],
        "flipped bytes in the entropy data": bytes(flipped),
        "no EOI marker": data[:-2],
    }


def cv2_accepts(data):
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None


# --------------------------------------------------------------------------------------------------
# Strict decoding


def test_decode_image_matches_opencv_on_intact_files():
    image = textured()
    for data in (jpeg(image), cv2.imencode(".png", image)[1].tobytes(),
                 jpeg(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))):
        expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        np.testing.assert_array_equal(common.decode_image(data, "x"), expected)


@pytest.mark.parametrize("progressive", [False, True])
def test_decode_image_refuses_damaged_jpegs(progressive):
    data = jpeg(textured(), *((cv2.IMWRITE_JPEG_PROGRESSIVE, 1) if progressive else ()))
    damaged = damaged_jpegs(data) if not progressive else {
        "cut to a third": data[:len(data) // 3], "no EOI marker": data[:-2],
        "cut in the last scan, EOI kept": data[:len(data) * 3 // 4] + data[-2:]}
    silently_accepted = [name for name, bad in damaged.items() if cv2_accepts(bad)]
    assert silently_accepted  # the fixtures include what OpenCV decodes with a grey fill
    for bad in damaged.values():
        with pytest.raises(common.BadImageError,
                           match=r"^photo\.jpg: image file exists but cannot be decoded: JPEG data "
                                 r"truncated or corrupt \(libjpeg: .+\)"):
            common.decode_image(bad, "photo.jpg")


def test_decode_image_refuses_damaged_pngs_and_non_images():
    data = cv2.imencode(".png", textured())[1].tobytes()
    idat = data.index(b"IDAT")
    flipped = bytearray(data)
    flipped[idat + 20] ^= 0xFF
    for bad in (data[:len(data) // 3], bytes(flipped)):
        with pytest.raises(common.BadImageError, match=r"^a\.png: .*cannot be decoded: truncated "
                                                       r"or corrupt"):
            common.decode_image(bad, "a.png")
    with pytest.raises(common.BadImageError, match="not an image"):
        common.decode_image(b"not an image at all", "a.png")
    with pytest.raises(common.BadImageError, match="the file is empty"):
        common.decode_image(b"", "a.png")


# --------------------------------------------------------------------------------------------------
# Plausible annotations

BOX = np.array([30.0, 20.0, 50.0, 30.0])   # longer side 20 px
PHOTO = (60, 80, 3)                        # H, W: pixel edges -0.5 .. 79.5, -0.5 .. 59.5


def points_in_box():
    return np.array([[32.0, 22.0], [48.0, 28.0], [40.0, 25.0]])


def test_check_face_margins_in_box_sides():
    side = 20.0
    visible = np.ones(3, bool)
    assert common.check_face(points_in_box(), visible, BOX, PHOTO) is None
    # Photo margin: 0.5 sides = 10 px beyond the edge 79.5 (the box grows to keep the box margin
    # out of the way).
    wide_box = np.array([30.0, 20.0, 78.0, 30.0])  # longer side 48: photo margin 24 px
    for outside, ok in ((23.9, True), (24.1, False)):
        points = points_in_box()
        points[1] = [79.5 + outside, 25.0]
        problem = common.check_face(points, visible, wide_box, PHOTO)
        assert (problem is None) == ok, (outside, problem)
    assert "landmark 1 at (103.6, 25.0) lies 24.1 px outside the 80x60 photo" in problem
    assert "allowed 0.5 face-box sides (24.0 px" in problem
    # Box margin: 1 side = 20 px beyond the box edge, the point staying inside the photo.
    for outside, ok in ((19.9, True), (20.1, False)):
        points = points_in_box()
        points[2] = [40.0, 30.0 + outside]
        problem = common.check_face(points, visible, BOX, (200, 200))
        assert (problem is None) == ok, (outside, problem)
    assert "landmark 2" in problem and "outside its face box (30.0, 20.0, 50.0, 30.0)" in problem
    assert f"allowed 1 face-box sides ({side:.1f} px" in problem
    # Points not visible are not checked.
    points = points_in_box()
    points[0] = [5000.0, 5000.0]
    assert common.check_face(points, np.array([False, True, True]), BOX, PHOTO) is None
    assert "landmark 0 at (5000.0, 5000.0)" in common.check_face(points, visible, BOX, PHOTO)


def test_check_face_box_must_overlap_the_photo():
    shifted = BOX + np.array([100.0, 0.0, 100.0, 0.0])  # x 130 .. 150, the photo ends at 79.5
    problem = common.check_face(points_in_box() + np.array([100.0, 0.0]), np.ones(3, bool),
                                shifted, PHOTO)
    assert problem.startswith("face box (130.0, 20.0, 150.0, 30.0) does not overlap the 80x60")
    touching = np.array([79.0, 20.0, 99.0, 30.0])  # overlaps by half a pixel
    points = np.array([[79.0, 25.0], [80.0, 25.0]])
    assert common.check_face(points, np.ones(2, bool), touching, PHOTO) is None


# --------------------------------------------------------------------------------------------------
# WFLW: images, annotations, empty splits, report


def read_report(builder):
    with open(os.path.join(builder.data_dir, common.REPORT_FILE)) as f:
        return json.load(f)


def test_wflw_damaged_photo_is_named_with_its_lines_or_skipped(tmp_path, capsys):
    manual = tmp_path / "manual"
    write_wflw(str(manual))
    photo = manual / WFLW_PHOTO
    good = jpeg(textured(70, 90))
    start, end = entropy_span(good)
    photo.write_bytes(good[:(start + end) // 2] + good[-2:])  # OpenCV decodes this with grey
    assert cv2_accepts(photo.read_bytes())
    train = os.path.join(WFLW_ANNOTATIONS, "list_98pt_rect_attr_train_test",
                         "list_98pt_rect_attr_train.txt")
    with pytest.raises(common.BadImageError,
                       match=rf"^{train}:1: .*0_Parade_marchingband_1_5\.jpg: image file exists "
                             r"but cannot be decoded: JPEG data truncated or corrupt \(libjpeg: "
                             r"Corrupt JPEG data: premature end of data segment\)\. Build with "
                             r"--skip_bad_images"):
        prepare(wflw.Wflw, manual, tmp_path / "data")
    builder = prepare(wflw.Wflw, manual, tmp_path / "data", skip_bad_images=True)
    assert builder.info.splits["train"].num_examples == 1  # lines 1 and 2 share the photo
    report = read_report(builder)
    skips = [(s["split"], s["kind"], s["source"]) for s in report["skips"]]
    assert skips == [("train", "bad_image", f"{train}:1"), ("train", "bad_image", f"{train}:2")]
    assert report["splits"]["train"]["examples"] == 1
    assert report["splits"]["train"]["skipped"] == {"bad_image": 2}
    out = capsys.readouterr().out
    assert f"train bad_image: {train}:2: " in out and "skipped faces (2)" in out


def test_wflw_landmark_far_outside_is_named_or_skipped(tmp_path):
    manual = tmp_path / "manual"
    faces = write_wflw(str(manual))
    path = annotation_path(str(manual), "train")

    def move_first_point(line):
        tokens = line.split(" ")
        tokens[0] = f"{float(tokens[0]) + 5000:.6f}"
        return " ".join(tokens)

    edit_line(path, 3, move_first_point)
    x, y = faces["train", 3][0][0]
    with pytest.raises(common.BadAnnotationError,
                       match=rf"train.txt:3: landmark 0 at \({x + 5000:.1f}, {y:.1f}\) lies .* px "
                             r"outside the 90x70 photo, more than the allowed 0.5 face-box sides "
                             r".*--skip_bad_annotations"):
        prepare(wflw.Wflw, manual, tmp_path / "data")
    builder = prepare(wflw.Wflw, manual, tmp_path / "data", skip_bad_annotations=True)
    assert builder.info.splits["train"].num_examples == 2
    (skip,) = read_report(builder)["skips"]
    assert skip["kind"] == "bad_annotation" and skip["source"].endswith("train.txt:3")
    assert "outside the 90x70 photo" in skip["reason"]


def test_wflw_empty_subset_is_left_out_and_empty_train_is_an_error(tmp_path, capsys):
    manual = tmp_path / "manual"
    write_wflw(str(manual), subset_files=False)
    path = annotation_path(str(manual), "test")
    for line in (1, 3):  # the large-pose faces: clear the first flag
        edit_line(path, line, lambda text: text.replace(" 1 0 0 0 1 0 ", " 0 0 0 0 1 0 ")
                  .replace(" 1 0 0 1 0 0 ", " 0 0 0 1 0 0 "))
    builder = prepare(wflw.Wflw, manual, tmp_path / "data")
    assert "test_largepose" not in builder.info.splits
    assert builder.info.splits["test_occlusion"].num_examples == 1
    assert ("wflw: note: split test_largepose has no examples (no face of "
            in capsys.readouterr().out)
    report = read_report(builder)
    assert "has the largepose flag" in report["left_out_splits"]["test_largepose"]
    assert "test_largepose" not in report["splits"]

    for name in ("0--Parade/0_Parade_marchingband_1_5.jpg", "1--Handshaking/1_Handshaking 7.jpg"):
        os.remove(manual / "WFLW_images" / name)
    with pytest.raises(common.DatasetError,
                       match=r"^wflw: split train has no examples: all 3 of its faces were skipped "
                             r"\(3 missing_image\); it is required"):
        prepare(wflw.Wflw, manual, tmp_path / "data2", skip_missing_images=True)


def test_wflw_build_report_statistics(tmp_path):
    """The report against statistics computed here from the annotation lines."""
    manual = tmp_path / "manual"
    faces = write_wflw(str(manual))
    path = annotation_path(str(manual), "train")
    # Train line 2: a point 0.9 box sides below its box, inside the photo and the margins but
    # outside the stored crop (2.5 box sides, centred: 0.75 sides beyond a square box).
    side = 20.0
    box = np.array([35.0, 15.0, 35.0 + side, 15.0 + side])
    points = np.clip(faces["train", 2][0], box[:2] + 1, box[2:] - 1)
    points[5] = [box[0] + side / 2, box[3] + 0.9 * side]  # y 53: in the photo, past the crop
    edit_line(path, 2, lambda line: " ".join(
        [*(f"{v:.6f}" for v in points.ravel()), *(str(int(v)) for v in box),
         *line.split(" ")[200:]]))
    faces["train", 2] = points, box, None, None
    builder = prepare(wflw.Wflw, manual, tmp_path / "data")
    report = read_report(builder)
    assert report["settings"]["photo_margin_box_sides"] == common.PHOTO_MARGIN
    assert report["settings"]["image_size"] == SIZE
    for split in ("train", "test"):
        stats = report["splits"][split]
        assert stats["examples"] == builder.info.splits[split].num_examples
        boxes = np.array([faces[s, line][1] for s, line in faces if s == split], float)
        sizes = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        np.testing.assert_allclose(stats["box_size_px"]["median"], np.median(sizes), rtol=1e-4)
        np.testing.assert_allclose(stats["box_size_px"]["max"], sizes.max(), rtol=1e-4)
        spreads = []
        for s, line in faces:
            if s == split:
                extent = crop.landmarks_box(faces[s, line][0])
                b = faces[s, line][1]
                spreads.append(np.sqrt(np.prod(extent[2:] - extent[:2]) / np.prod(b[2:] - b[:2])))
        np.testing.assert_allclose(stats["landmark_extent_over_box"]["min"], min(spreads),
                                   rtol=1e-3)
    outside = report["splits"]["train"]["landmarks_outside_crop"]
    assert outside["examples"] == 1 and outside["points"] == 1
    assert outside["sources"][0].endswith("train.txt:2")
    assert report["splits"]["test"]["landmarks_outside_crop"]["examples"] == 0


# --------------------------------------------------------------------------------------------------
# 300W, COFW, AFLW-19


def test_w300_truncated_png_and_emptied_split(tmp_path, capsys):
    manual = tmp_path / "manual"
    write_w300(str(manual))
    png = manual / "lfpw/trainset/image_0001.png"
    png.write_bytes(cv2.imencode(".png", textured(70, 90))[1].tobytes()[:400])
    with pytest.raises(common.BadImageError,
                       match=r"lfpw/trainset/image_0001.pts: .*image_0001.png: image file exists "
                             "but cannot be decoded: truncated or corrupt"):
        prepare(w300.W300, manual, tmp_path / "data")
    for stem in ("image_092 _01", "image_003_1"):  # every ibug face: challenge becomes empty
        photo = manual / "ibug" / f"{stem}.jpg"
        photo.write_bytes(photo.read_bytes()[:len(photo.read_bytes()) // 3])
    builder = prepare(w300.W300, manual, tmp_path / "data", skip_bad_images=True)
    assert "challenge" not in builder.info.splits
    assert builder.info.splits["full"].num_examples == 2
    assert builder.info.splits["train"].num_examples == 3
    assert ("w300: note: split challenge has no examples (all 2 of its faces were skipped (2 "
            "bad_image)); it is left out" in capsys.readouterr().out)
    report = read_report(builder)
    assert sorted({s["source"] for s in report["skips"]}) == [
        "ibug/image_003_1.pts", "ibug/image_092 _01.pts", "lfpw/trainset/image_0001.pts"]


def test_cofw_implausible_box_is_named_or_skipped(tmp_path):
    rng = np.random.default_rng(7)
    images, phis, boxes = cofw_faces(rng, 3)
    boxes[1, :2] += 500.0  # the box of face 1 leaves the photo
    manual = tmp_path / "manual"
    manual.mkdir()
    write_cofw(manual / "COFW_train_color.mat", "Tr", images[:1], phis[:1], boxes[:1])
    write_cofw(manual / "COFW_test_color.mat", "T", images, phis, boxes)
    with pytest.raises(common.BadAnnotationError,
                       match=r"^COFW_test_color\.mat#1: face box \(.*\) does not overlap the "
                             r"48x43 photo"):
        build_cofw(tmp_path / "data", manual)
    builder = build_cofw(tmp_path / "skip", manual, skip_bad_annotations=True)
    assert builder.info.splits["test"].num_examples == 2
    assert [s["source"] for s in read_report(builder)["skips"]] == ["COFW_test_color.mat#1"]


def build_cofw(data_dir, manual, **kwargs):
    builder = Cofw(data_dir=os.fspath(data_dir), file_format="array_record", image_size=SIZE,
                   **kwargs)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual)))
    return builder


def test_aflw_corrupt_jpeg_is_named_with_its_entry(tmp_path):
    manual = tmp_path / "manual"
    truth = write_aflw(manual, np.random.default_rng(5))
    name = truth["names"][3]
    good = jpeg(textured(48, 56))
    start, end = entropy_span(good)
    (manual / "aflw" / "data" / "flickr" / name).write_bytes(good[:(start + end) // 2]
                                                              + good[-2:])
    with pytest.raises(common.BadImageError,
                       match=rf"AFLWinfo_release\.mat entry 3 \(nameList '{name}'\): .*{name}: "
                             r"image file exists but cannot be decoded: JPEG data truncated"):
        Aflw19(data_dir=str(tmp_path / "data"), file_format="array_record", image_size=SIZE,
               num_train=NUM_TRAIN).download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))


# --------------------------------------------------------------------------------------------------
# The command lines


def test_build_cli_flags_and_errors(tmp_path, capsys):
    manual = tmp_path / "manual"
    write_wflw(str(manual))
    (manual / WFLW_PHOTO).write_bytes((manual / WFLW_PHOTO).read_bytes()[:200])
    args = ["wflw", "--manual_dir", str(manual), "--data_dir", str(tmp_path / "data"),
            "--image_size", str(SIZE)]
    assert build.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "0_Parade" in err
    assert build.main([*args, "--skip_bad_images"]) == 0
    out = capsys.readouterr().out
    report = os.path.join(str(tmp_path / "data"), "wflw", "1.0.0", common.REPORT_FILE)
    assert f"build report: {report}" in out and os.path.isfile(report)
    with pytest.raises(SystemExit) as usage:
        build.main(["synthetic_faces", "--skip_bad_images"])
    assert usage.value.code == 2 and "takes no --skip_bad_images" in capsys.readouterr().err


@pytest.fixture(scope="module")
def wflw_data(tmp_path_factory):
    manual = tmp_path_factory.mktemp("manual")
    faces = write_wflw(str(manual))
    data_dir = tmp_path_factory.mktemp("data")
    build.build("wflw", manual_dir=str(manual), data_dir=str(data_dir), image_size=SIZE)
    return faces, data_dir


def test_show_stored_crops_draws_landmarks_in_index_colours(wflw_data, tmp_path):
    _, data_dir = wflw_data
    out = tmp_path / "sheet.png"
    cell = 128
    assert show.main(["wflw", "--split", "test", "--out", str(out), "--data_dir",
                      str(data_dir), "--cell", str(cell)]) == 0
    sheet = cv2.imread(str(out))[..., ::-1]
    source = tfds.data_source("wflw", data_dir=str(data_dir), split="test")
    assert len(source) == 4
    top = sheet.shape[0] - 2 * (cell + 2) + 2  # 4 cells: 2 x 2 under the title
    assert sheet.shape[1] == max(2 * (cell + 2) - 2, 320)
    colours = show.landmark_colours(98)
    checked = 0
    for i in range(4):
        record = source[i]
        r, c = divmod(i, 2)
        cell_points = (np.asarray(record["landmarks"], float) + 0.5) * cell / SIZE - 0.5
        distances = np.linalg.norm(cell_points[:, None] - cell_points[None], axis=-1)
        np.fill_diagonal(distances, np.inf)
        for index in np.flatnonzero(distances.min(axis=1) > 6):  # dots that no other covers
            u, v = cell_points[index]
            if v < cell - 16:  # not under the caption
                y, x = top + r * (cell + 2) + round(v), c * (cell + 2) + round(u)
                np.testing.assert_allclose(sheet[y, x], colours[index], atol=40)
                checked += 1
    assert checked >= 4
    np.testing.assert_array_equal(colours[[0, -1]], [[255, 0, 0], [250, 0, 255]])


def test_show_augmented_and_errors(wflw_data, tmp_path, capsys):
    _, data_dir = wflw_data
    out = tmp_path / "augmented.png"
    config = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "tiny.py")
    assert show.main(["wflw", "--split", "train", "--out", str(out), "--data_dir", str(data_dir),
                      "--augmented", "--config", config, "--n", "3", "--cell", "64"]) == 0
    assert cv2.imread(str(out)).shape[1] == 320  # 2 columns of 64 px, the minimum width
    assert "3 examples of wflw train" in capsys.readouterr().out
    assert show.main(["wflw", "--split", "test_nothing", "--out", str(out), "--data_dir",
                      str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: wflw: no split 'test_nothing'") and "test_blur" in err
    assert show.main(["w300", "--split", "train", "--out", str(out), "--data_dir",
                      str(data_dir)]) == 2
    assert "python -m datasets.build w300" in capsys.readouterr().err
    assert show.main(["wflw", "--split", "test", "--out", str(out), "--data_dir", str(data_dir),
                      "--find", "rect_attr_test.txt:3"]) == 0
    assert "1 examples of wflw test, source contains" in capsys.readouterr().out


def test_synthetic_faces_report_and_augmented_sheet(tmp_path):
    out = tmp_path / "synthetic.png"
    build.build("synthetic_faces", data_dir=str(tmp_path), num_train=6, num_test=0, image_size=64)
    report = json.loads((tmp_path / "synthetic_faces" / "1.0.0" / common.REPORT_FILE).read_text())
    assert report["splits"]["train"]["examples"] == 6 and "test" not in report["splits"]
    assert show.main(["synthetic_faces", "--split", "train", "--out", str(out), "--data_dir",
                      str(tmp_path), "--augmented", "--n", "4", "--cell", "64"]) == 0
    assert cv2.imread(str(out)) is not None
