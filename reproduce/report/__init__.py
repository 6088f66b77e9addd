"""The paper's outputs from prediction CSVs, never a model: Table I, Figure 1 (`cli`, `table1`,
`figure1`), and the contract they read (`predictions`). No module here imports TensorFlow."""
