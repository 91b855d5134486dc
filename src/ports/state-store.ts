import type { EventOutbox } from './event-outbox.ts'
import type { AuditLog, HistoryPruning, ScanHistory } from './history-store.ts'
import type { JobQueue } from './job-queue.ts'
import type { AdoptionStore, RescanStore } from './rescan-store.ts'
import type { StateDatabase } from './state-database.ts'
import type { UploadActions } from './upload-actions.ts'
import type { UploadChanges } from './upload-changes.ts'
import type { OrphanLedger, UploadIntake } from './upload-intake.ts'
import type { UploadLookup } from './upload-record.ts'

/**
 * Every state port, as one database provides them. Only the composition root and the contract
 * suite see this whole; each service receives the few ports it uses.
 */
export interface StateStore
  extends StateDatabase,
    UploadLookup,
    UploadIntake,
    OrphanLedger,
    JobQueue,
    UploadActions,
    RescanStore,
    AdoptionStore,
    EventOutbox,
    ScanHistory,
    AuditLog,
    HistoryPruning,
    UploadChanges {}
