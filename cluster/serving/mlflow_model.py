"""The code of anneal's MLflow Model (models from code): `mlflow.pyfunc.load_model` runs this
file to build the model, then hands it the model package (`cluster.serving.pyfunc`)."""

from mlflow.models import set_model

from cluster.serving.pyfunc import AnnealPyfunc

set_model(AnnealPyfunc())
