/** The database behind the state ports: its schema, its health and its connections. */
export interface StateDatabase {
  /** Creates or upgrades the schema; safe to run at every start. */
  migrate(): Promise<void>
  /** Throws when the store cannot be reached. */
  ping(): Promise<void>
  close(): Promise<void>
}

/** The state store could not be reached or failed; retry later. */
export class StateUnavailableError extends Error {
  override name = 'StateUnavailableError'
}
