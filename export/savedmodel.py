"""SavedModel export through `keras.export.ExportArchive`."""

from keras.export import ExportArchive

SIGNATURE_KEY = "serving_default"


def write_savedmodel(model, path, function, inputs):
    """Write `model` as a SavedModel whose `serving_default` is `function`.

    The signature takes the inputs by name and returns a dict keyed by
    output name, so a consumer of the SavedModel (TensorFlow Serving, the
    TFLite converter) sees the Keras names.
    """
    archive = ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        SIGNATURE_KEY,
        function.python_function,
        input_signature=[info.spec() for info in inputs],
    )
    archive.write_out(str(path), verbose=False)
