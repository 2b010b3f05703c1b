"""The models: one recurrent network for every cell and strategy, its losses, and the baselines it must beat.

- `cells`: the recurrent layers by name (torch's fused RNN/LSTM/GRU, our peephole LSTM) and their initialisation.
- `revin`: reversible instance normalisation of the target columns.
- `network`: `RecurrentForecaster`, `[B, L, F_past]`, `[B, H, F_future]` -> `[B, H, T, Q]`: RevIN and channel
  independence around an encoder and a decoder, paired by strategy name.
- `encoder`: what reads the lookback (`Encoder`, `WarmUp` for recursive, `SegmentEncoder`).
- `decoders`: what makes the horizon (`DirectHead`, `RollOut` with optional `LuongAttention`, `SegmentDecoder`).
- `losses`: point and quantile losses, and the point forecast out of `[B, H, T, Q]`.
- `baselines`: naive, seasonal-naive and a linear model on lags, saved as JSON.

Nothing is imported here, so that `import forecaster.models` stays cheap (no torch).
"""
