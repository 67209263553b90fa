"""A deliberately tiny freqtrade strategy for the gateway's end-to-end check: it enters long on
the first candle it sees, and exits a minute later (``custom_exit``), then may enter again.
Not a trading idea: it only makes freqtrade walk the whole order path through the gateway."""

import os
from datetime import datetime, timedelta

from pandas import DataFrame

from freqtrade.persistence import Trade
from freqtrade.strategy import IStrategy


class GatewayProbe(IStrategy):
    INTERFACE_VERSION = 3
    can_short = False
    timeframe = "1m"
    startup_candle_count = 10
    process_only_new_candles = False
    minimal_roi = {"0": 100}  # never exit on ROI: the exit below is the one under test
    stoploss = -0.05  # within the gateway's crypto max_distance_pct (10 %)
    use_exit_signal = True  # custom_exit is only asked when exit signals are used
    order_types = {
        "entry": "market",
        "exit": "market",
        "stoploss": "market",
        # FREQTRADE_STOPLOSS_ON_EXCHANGE=1: freqtrade places its own stop (STOP_MARKET, reduce-only)
        # and the gateway accepts it as the position's stop; otherwise the gateway attaches one.
        "stoploss_on_exchange": os.environ.get("FREQTRADE_STOPLOSS_ON_EXCHANGE") == "1",
    }

    def populate_indicators(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        return dataframe

    def populate_entry_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe.loc[dataframe["volume"] >= 0, ["enter_long", "enter_tag"]] = (1, "probe_entry")
        return dataframe

    def populate_exit_trend(self, dataframe: DataFrame, metadata: dict) -> DataFrame:
        dataframe["exit_long"] = 0
        return dataframe

    def custom_exit(self, pair: str, trade: Trade, current_time: datetime, current_rate: float,
                    current_profit: float, **kwargs):
        if current_time - trade.open_date_utc >= timedelta(seconds=45):
            return "probe_exit"
        return None

    def leverage(self, pair: str, current_time: datetime, current_rate: float, proposed_leverage: float,
                 max_leverage: float, entry_tag, side: str, **kwargs) -> float:
        return 1.0  # the default policy's crypto leverage
