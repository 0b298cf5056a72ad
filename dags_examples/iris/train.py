"""Train a logistic-regression classifier on scikit-learn's iris data set.

Runs anywhere: under a compute target `Run.get_context()` is the live run and everything below
is recorded in the workspace; started by hand it is an offline run that prints to the console.
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from airflow_aml.runtime import Run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--C", type=float, default=1.0, help="inverse regularisation strength")
    parser.add_argument("--max-iter", type=int, default=200)
    args = parser.parse_args()

    run = Run.get_context()
    run.log_params({"C": args.C, "max_iter": args.max_iter, "model": "LogisticRegression"})

    data = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.3, random_state=42, stratify=data.target
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(C=args.C, max_iter=args.max_iter))

    folds = cross_val_score(model, x_train, y_train, cv=5)
    run.log_list("cv_fold_accuracy", [float(f) for f in folds])
    run.log("cv_accuracy", float(folds.mean()))

    model.fit(x_train, y_train)
    accuracy = accuracy_score(y_test, model.predict(x_test))
    run.log("accuracy", float(accuracy))
    for true_class, row in enumerate(confusion_matrix(y_test, model.predict(x_test))):
        run.log_row("confusion_matrix", true_class=true_class, **{f"pred_{i}": int(v) for i, v in enumerate(row)})
    print(f"C={args.C} cv_accuracy={folds.mean():.4f} accuracy={accuracy:.4f}")

    # Everything written to ./outputs is collected into the run.
    outputs = Path("outputs")
    outputs.mkdir(exist_ok=True)
    with open(outputs / "model.pkl", "wb") as handle:
        pickle.dump(model, handle)
    (outputs / "model_info.json").write_text(
        json.dumps({"features": list(data.feature_names), "classes": list(data.target_names)}, indent=2)
    )


if __name__ == "__main__":
    main()
