"""examples/serve_onnx.py: the ONNX classifier over HTTP on 127.0.0.1.

Each server runs in a subprocess on a port that the OS picks (`--port 0`)
and is terminated at fixture teardown. Every request has a timeout.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import http.client  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import selectors  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from conftest import DIGITS_CLASS_LABELS, DIGITS_PREPROCESSING  # noqa: E402

import export  # noqa: E402

SERVER = Path(__file__).resolve().parents[1] / "examples" / "serve_onnx.py"
HOST = "127.0.0.1"
START_TIMEOUT = 60
# The first image request imports TensorFlow in the server to decode it.
REQUEST_TIMEOUT = 60
IMAGES = 5
# Images whose Keras top-1 probability is at least this, so that the int8
# model's quantization noise cannot reorder the first two classes.
CONFIDENT = 0.9
ADDRESS = re.compile(r"^serving .* on http://127\.0\.0\.1:(\d+)$")


class Server:
    """A running serve_onnx.py subprocess and the port it listens on."""

    def __init__(self, model_path, log_path):
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), str(model_path), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.port = self._read_port()

    def _read_port(self):
        deadline = time.monotonic() + START_TIMEOUT
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        try:
            while time.monotonic() < deadline:
                if not selector.select(timeout=deadline - time.monotonic()):
                    break
                line = self.process.stdout.readline()
                if not line:
                    break
                match = ADDRESS.match(line.strip())
                if match:
                    return int(match.group(1))
        finally:
            selector.close()
        self.stop()
        raise RuntimeError("serve_onnx.py printed no address")

    def request(self, method, path, body=None, headers=None):
        """Return (status, content type, decoded JSON body)."""
        connection = http.client.HTTPConnection(
            HOST, self.port, timeout=REQUEST_TIMEOUT
        )
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            payload = response.read()
            content_type = response.getheader("Content-Type")
        finally:
            connection.close()
        return response.status, content_type, json.loads(payload)

    def post_json(self, payload, content_type="application/json"):
        body = json.dumps(payload).encode()
        return self.request(
            "POST", "/predict", body, {"Content-Type": content_type}
        )

    def post_image(self, data):
        return self.request(
            "POST", "/predict", data, {"Content-Type": "image/png"}
        )

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process.stdout.close()
        self.log.close()


@pytest.fixture(scope="module")
def onnx_server(digits_export, tmp_path_factory):
    out_dir, _ = digits_export
    log = tmp_path_factory.mktemp("serve_float") / "server.log"
    server = Server(out_dir / "model.onnx", log)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def int8_server(digits_export, tmp_path_factory):
    out_dir, _ = digits_export
    log = tmp_path_factory.mktemp("serve_int8") / "server.log"
    server = Server(out_dir / "model_int8.onnx", log)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def nchw_server(digits_model, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("serve_nchw") / "export"
    export.export_model(
        digits_model,
        out_dir,
        ["onnx"],
        nchw=True,
        class_labels=DIGITS_CLASS_LABELS,
        preprocessing=DIGITS_PREPROCESSING,
    )
    server = Server(out_dir / "model.onnx", out_dir.parent / "server.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def digits(digits_model, digits_split):
    """Return PNG bytes, model inputs and Keras scores of confident digits.

    The inputs are the 8-bit PNG pixels times 1/255, what the server's
    stored preprocessing computes from the PNG file.
    """
    _, _, x_test, _ = digits_split
    pixels = np.round(x_test * 255).astype(np.uint8)
    inputs = pixels.astype(np.float32) * np.float32(1 / 255)
    scores = keras.ops.convert_to_numpy(digits_model(inputs, training=False))
    chosen = np.flatnonzero(scores.max(axis=-1) >= CONFIDENT)[:IMAGES]
    pngs = [tf.io.encode_png(pixels[i]).numpy() for i in chosen]
    return pngs, inputs[chosen], scores[chosen]


def keras_labels(scores):
    return [DIGITS_CLASS_LABELS[i] for i in np.argmax(scores, axis=-1)]


# Health and images


def test_server_prints_port(onnx_server):
    # Server() accepts only an address line naming http://127.0.0.1:PORT.
    assert onnx_server.port > 0


def test_health_status_ok(onnx_server):
    status, _, body = onnx_server.request("GET", "/health")
    assert status == 200
    assert body["status"] == "ok"


def test_health_names_model(onnx_server, digits_export):
    out_dir, _ = digits_export
    _, _, body = onnx_server.request("GET", "/health")
    assert body["model"] == str(out_dir / "model.onnx")


def test_unknown_path_404(onnx_server):
    status, _, body = onnx_server.request("GET", "/nothing")
    assert status == 404
    assert "error" in body


def test_png_top_label_matches(onnx_server, digits):
    pngs, _, scores = digits
    labels = []
    for data in pngs:
        status, _, body = onnx_server.post_image(data)
        assert status == 200, body
        labels.append(body["top_k"][0]["label"])
    assert labels == keras_labels(scores)


def test_png_score_matches(onnx_server, digits):
    pngs, _, scores = digits
    _, _, body = onnx_server.post_image(pngs[0])
    top = body["top_k"][0]
    expected = scores[0][DIGITS_CLASS_LABELS.index(top["label"])]
    assert abs(top["score"] - expected) <= 1e-4


def test_png_top_k_default_five(onnx_server, digits):
    pngs, _, _ = digits
    _, _, body = onnx_server.post_image(pngs[0])
    assert len(body["top_k"]) == 5


def test_int8_png_top_label(int8_server, digits):
    pngs, _, scores = digits
    labels = [int8_server.post_image(d)[2]["top_k"][0]["label"] for d in pngs]
    assert labels == keras_labels(scores)


def test_nchw_png_top_label(nchw_server, digits):
    pngs, _, scores = digits
    labels = [nchw_server.post_image(d)[2]["top_k"][0]["label"] for d in pngs]
    assert labels == keras_labels(scores)


def test_nchw_json_batch(nchw_server, digits):
    # The JSON inputs are NHWC whatever the file's layout.
    _, inputs, scores = digits
    status, _, body = nchw_server.post_json({"inputs": inputs.tolist()})
    assert status == 200, body
    assert [r[0]["label"] for r in body["top_k"]] == keras_labels(scores)


# JSON batches


def test_json_batch_status(onnx_server, digits):
    _, inputs, _ = digits
    status, _, body = onnx_server.post_json({"inputs": inputs.tolist()})
    assert status == 200, body


def test_json_batch_one_per_sample(onnx_server, digits):
    _, inputs, _ = digits
    _, _, body = onnx_server.post_json({"inputs": inputs.tolist()})
    assert len(body["top_k"]) == len(inputs)


def test_json_batch_labels_match(onnx_server, digits):
    _, inputs, scores = digits
    _, _, body = onnx_server.post_json({"inputs": inputs.tolist()})
    assert [r[0]["label"] for r in body["top_k"]] == keras_labels(scores)


def test_json_charset_content_type(onnx_server, digits):
    # A media type parameter does not change what the body is.
    _, inputs, _ = digits
    status, _, body = onnx_server.post_json(
        {"inputs": inputs.tolist()}, "application/json; charset=utf-8"
    )
    assert status == 200, body


# Bad requests get 400 with a JSON error


def test_garbage_gets_400(onnx_server):
    status, _, body = onnx_server.post_image(b"\x00garbage, not an image\xff")
    assert status == 400
    assert isinstance(body["error"], str)


def test_garbage_reply_is_json(onnx_server):
    _, content_type, _ = onnx_server.post_image(b"garbage")
    assert content_type == "application/json"


def test_empty_body_gets_400(onnx_server):
    status, _, body = onnx_server.request(
        "POST", "/predict", b"", {"Content-Length": "0"}
    )
    assert status == 400
    assert "error" in body


def test_json_without_inputs_400(onnx_server):
    status, _, body = onnx_server.post_json({"images": [1, 2, 3]})
    assert status == 400
    assert "error" in body


def test_invalid_json_gets_400(onnx_server):
    status, _, body = onnx_server.request(
        "POST", "/predict", b"{not json", {"Content-Type": "application/json"}
    )
    assert status == 400
    assert "error" in body


def test_json_wrong_shape_400(onnx_server):
    wrong = np.zeros((2, 5, 5, 1), dtype=np.float32)
    try:
        status, _, body = onnx_server.post_json({"inputs": wrong.tolist()})
    except (http.client.HTTPException, ConnectionError) as err:
        pytest.fail(f"no HTTP reply to a wrongly shaped batch: {err!r}")
    assert status == 400
    assert "error" in body


def test_json_missing_batch_axis_400(onnx_server, digits):
    # One sample without its batch dimension.
    _, inputs, _ = digits
    try:
        status, _, body = onnx_server.post_json({"inputs": inputs[0].tolist()})
    except (http.client.HTTPException, ConnectionError) as err:
        pytest.fail(f"no HTTP reply to a 3-D batch: {err!r}")
    assert status == 400
    assert "error" in body


def test_server_survives_bad_requests(onnx_server):
    onnx_server.post_image(b"garbage")
    try:
        onnx_server.post_json({"inputs": [[1.0]]})
    except (http.client.HTTPException, ConnectionError):
        pass
    status, _, _ = onnx_server.request("GET", "/health")
    assert status == 200


def test_missing_model_exits_two(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(SERVER),
            str(tmp_path / "none.onnx"),
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "not found" in result.stderr
