"""Serve an exported ONNX classifier over HTTP on localhost with onnxruntime.

    python examples/serve_onnx.py out/demo/resnet20/model.onnx --port 8000

Endpoints:

- `GET /health` returns {"status": "ok", "model": path}.
- `POST /predict` takes an image file (PNG, JPEG, BMP or GIF) as the body,
  applies the preprocessing stored in the ONNX file's `metadata_props` and
  returns {"top_k": [{"label": ..., "score": ...}, ...]}. A JSON body
  {"inputs": [...]} with an already preprocessed NHWC batch is accepted
  too and returns one top-k list per sample.

The server binds 127.0.0.1 by default and prints the bound address on
stdout, so `--port 0` picks a free port. It needs only onnxruntime, numpy
and, to decode image bodies, TensorFlow.
"""

import argparse
import json
import logging
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from export.metadata import (
    apply_preprocessing,
    check_preprocessing,
    from_onnx_props,
)

logger = logging.getLogger("serve_onnx")

# Request bodies larger than this are rejected with 413.
MAX_BODY_BYTES = 16 * 1024 * 1024


class Classifier:
    """An ONNX classifier with its stored labels and preprocessing."""

    def __init__(self, path):
        self.path = Path(path)
        model = onnx.load(str(path), load_external_data=False)
        metadata = from_onnx_props(
            {entry.key: entry.value for entry in model.metadata_props}
        )
        self.preprocessing = check_preprocessing(metadata["preprocessing"])
        self.labels = metadata["class_labels"]
        self.session = onnxruntime.InferenceSession(
            str(path), providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        props = self.session.get_modelmeta().custom_metadata_map
        self.nchw = props.get("layout") == "NCHW"

    def scores(self, batch):
        """Return class scores of an NHWC float32 batch."""
        if self.nchw:
            batch = np.transpose(batch, (0, 3, 1, 2))
        return self.session.run(None, {self.input_name: batch})[0]

    def top_k(self, scores, k):
        labels = self.labels or [str(i) for i in range(scores.shape[-1])]
        order = np.argsort(-scores)[:k]
        return [{"label": labels[i], "score": float(scores[i])} for i in order]

    def image_batch(self, body):
        """Decode and preprocess one image file's bytes."""
        if self.preprocessing is None:
            raise ValueError(
                "the model has no stored preprocessing; send a JSON body "
                'with "inputs" instead'
            )
        from export.images import decode_image

        pixels = decode_image(
            body,
            self.preprocessing["height"],
            self.preprocessing["width"],
            self.preprocessing["channels"],
            source="the request body",
        )
        return apply_preprocessing(pixels[np.newaxis], self.preprocessing)


def make_handler(classifier, top_k):
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status, payload):
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/health":
                self._reply(
                    200, {"status": "ok", "model": str(classifier.path)}
                )
            else:
                self._reply(404, {"error": f"no such endpoint: {self.path}"})

        def do_POST(self):
            if self.path != "/predict":
                self._reply(404, {"error": f"no such endpoint: {self.path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0:
                self._reply(400, {"error": "empty request body"})
                return
            if length > MAX_BODY_BYTES:
                self._reply(413, {"error": "request body too large"})
                return
            body = self.rfile.read(length)
            try:
                content_type = self.headers.get("Content-Type") or ""
                media_type = content_type.split(";")[0].strip().lower()
                if media_type == "application/json":
                    batch = np.asarray(
                        json.loads(body)["inputs"], dtype=np.float32
                    )
                    results = [
                        classifier.top_k(row, top_k)
                        for row in classifier.scores(batch)
                    ]
                    self._reply(200, {"top_k": results})
                    return
                scores = classifier.scores(classifier.image_batch(body))[0]
            except (ValueError, KeyError, TypeError) as err:
                logger.warning("rejected request: %s", err)
                self._reply(400, {"error": str(err)})
                return
            except (
                onnxruntime.capi.onnxruntime_pybind11_state.Fail,
                onnxruntime.capi.onnxruntime_pybind11_state.InvalidArgument,
            ) as err:
                # A batch whose shape or dtype the model does not take.
                logger.warning("inference failed: %s", err)
                first_line = (str(err).splitlines() or [""])[0]
                self._reply(400, {"error": f"inference failed: {first_line}"})
                return
            self._reply(200, {"top_k": classifier.top_k(scores, top_k)})

        def log_message(self, format, *args):
            logger.info("%s %s", self.address_string(), format % args)

    return Handler


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an exported .onnx file")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port; 0 picks a free one"
    )
    parser.add_argument(
        "--top-k", type=int, default=5, help="labels per response (default: 5)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    if not args.model.is_file():
        print(f"error: ONNX file not found: {args.model}", file=sys.stderr)
        return 2

    classifier = Classifier(args.model)
    server = ThreadingHTTPServer(
        (args.host, args.port), make_handler(classifier, args.top_k)
    )
    host, port = server.server_address[:2]
    print(f"serving {args.model} on http://{host}:{port}", flush=True)
    logger.info("started on %s:%d", host, port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        logger.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
