// Whether a server's own capability lists offered the upgrade (Dialogue.serverUpgrade), as the
// wrapper's rewrites see them go by: unknown until one is seen; once one did, it stays so.
export class UpgradeSeen {
  private offered: boolean | undefined;

  /** A list of the server's own, with (true) or without the upgrade in it. */
  saw(offers: boolean): void {
    this.offered = this.offered === true || offers;
  }

  get state(): boolean | undefined {
    return this.offered;
  }
}
