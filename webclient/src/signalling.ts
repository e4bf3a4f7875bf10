/**
 * The socket.io connection to the server, typed by the generated protocol.
 *
 * Every client event is emitted with an ack and a timeout; `request` resolves with the
 * ack's `data` or rejects with a `SignallingError` carrying the server's error code.
 */
import { io, type Socket } from "socket.io-client";
import type { AckData, ClientEvents, ErrorBody, ServerEvents } from "./generated/protocol";

export const ACK_TIMEOUT_MS = 10_000;

/** An error ack from the server, or a local failure with a client-side code. */
export class SignallingError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "SignallingError";
  }
}

interface OkAck<T> {
  ok: true;
  data: T;
}
interface ErrAck {
  ok: false;
  error: ErrorBody;
}
type Ack<T> = OkAck<T> | ErrAck;

export type DisconnectListener = (reason: string, willReconnect: boolean) => void;

export class Signalling {
  private readonly socket: Socket;

  constructor() {
    // Same origin; websocket only (long-polling is not served).
    this.socket = io({
      path: "/socket.io",
      transports: ["websocket"],
      autoConnect: false,
      reconnection: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 5_000,
    });
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  /**
   * Connect and resolve once connected. Rejects on the first connection error: with
   * code `not_signed_in` when the server refuses us (no valid sign-in or invite pass),
   * `connect_failed` when it cannot be reached.
   */
  connect(): Promise<void> {
    if (this.socket.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onConnect = (): void => {
        this.socket.off("connect_error", onError);
        resolve();
      };
      const onError = (err: Error): void => {
        this.socket.off("connect", onConnect);
        this.socket.disconnect();
        reject(refusalOf(err) ?? connectFailed(err));
      };
      this.socket.once("connect", onConnect);
      this.socket.once("connect_error", onError);
      this.socket.connect();
    });
  }

  /**
   * Called when the server refuses a (re)connection. socket.io does not retry a refused
   * connection, so the session cannot go on without the user (signing in again).
   */
  onRefused(handler: (error: SignallingError) => void): void {
    this.socket.on("connect_error", (err: Error) => {
      if (this.socket.active) return; // a network error: socket.io keeps trying
      handler(refusalOf(err) ?? connectFailed(err));
    });
  }

  /** Say goodbye: the server ends the seat at once (only for Leave). */
  disconnect(): void {
    this.socket.disconnect();
  }

  /** Close the socket without a goodbye, as if the network dropped: the server holds
   * the seat for the reconnect window, so "Try again" (or a reload) returns to it. */
  drop(): void {
    this.socket.io.reconnection(false);
    this.socket.io.engine?.close();
  }

  /** Emit a client event and wait for its ack. */
  async request<E extends keyof ClientEvents>(
    event: E,
    payload: ClientEvents[E],
    timeoutMs: number = ACK_TIMEOUT_MS,
  ): Promise<AckData[E]> {
    let ack: Ack<AckData[E]>;
    try {
      ack = (await this.socket.timeout(timeoutMs).emitWithAck(event, payload)) as Ack<AckData[E]>;
    } catch {
      throw new SignallingError("timeout", `The server did not answer "${event}" in time.`);
    }
    if (ack.ok) return ack.data;
    throw new SignallingError(ack.error.code, ack.error.message);
  }

  /** Listen to a server event. */
  on<E extends keyof ServerEvents>(event: E, handler: (payload: ServerEvents[E]) => void): void {
    // socket.io-client's listener typing is untyped without a declared event map.
    this.socket.on(event as string, handler as (payload: unknown) => void);
  }

  /** Called after every (re)connection. */
  onConnect(handler: () => void): void {
    this.socket.on("connect", handler);
  }

  /**
   * Called when the connection drops. `willReconnect` is false when the client or the
   * server closed it on purpose (socket.io does not reconnect then).
   */
  onDisconnect(handler: DisconnectListener): void {
    this.socket.on("disconnect", (reason) => {
      const willReconnect = reason !== "io client disconnect" && reason !== "io server disconnect";
      handler(reason, willReconnect);
    });
  }
}

function connectFailed(err: Error): SignallingError {
  return new SignallingError("connect_failed", `Could not reach the server (${err.message}).`);
}

/**
 * The server's refusal of a connection, if that is what `err` is. The refusal's code
 * travels in the error's `data` ({code, message}); a server that put the whole object in
 * the message (python-socketio turns a single argument into a string) is understood too.
 */
function refusalOf(err: Error): SignallingError | null {
  const data: unknown = (err as Error & { data?: unknown }).data;
  if (typeof data === "object" && data !== null && "code" in data) {
    const { code, message } = data as { code: unknown; message?: unknown };
    if (typeof code === "string") {
      return new SignallingError(code, typeof message === "string" ? message : err.message);
    }
  }
  if (err.message.includes("not_signed_in")) {
    return new SignallingError("not_signed_in", "Please open your invite link or sign in.");
  }
  return null;
}
