// ES module entry: the same API as the CommonJS index.js.
import warren from './index.js';

export const {
  startWarren,
  Broker,
  WarrenError,
  findBinary,
  parseDuration,
  formatEvent,
  waitForFailure,
  idleFailure,
} = warren;
export default warren;
