import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { unaryHandler } from './handler.js';
import type { HandlerContext } from './handler.js';

/** The name the driver registers under (GetPluginInfo.name, CSIDriver, StorageClass provisioner). */
export const csiDriverName = 'rdl.csi.rdl.io';

/** The driver's vendor version (GetPluginInfo.vendor_version). */
export const csiDriverVersion = '0.1.0';

/** Identity options. */
export interface IdentityOptions {
  /** Reports readiness for Probe; the driver is ready once its services are bound. */
  isReady: () => boolean;
}

/**
 * The volume expansion the plugin advertises: OFFLINE. rdl itself can grow a volume at any time,
 * but the kernel NBD client fixes a device's size when it connects (nbd-client cannot change it,
 * and the netlink RECONFIGURE command is not implemented), so a staged volume cannot see its new
 * size. ONLINE would promise the CO that an in-use volume grows; OFFLINE tells it to expand only
 * volumes that are not staged on any node, after which NodeStageVolume attaches the device at its
 * new size and NodeExpandVolume grows the filesystem (see docs/csi.md, "Expansion").
 */
export const volumeExpansionType = 'OFFLINE';

/**
 * The Identity service. Capabilities are the same whatever the mode (controller, node or all),
 * as the spec requires of every instance of one plugin version: the controller service, and
 * `volumeExpansionType` (OFFLINE) volume expansion.
 */
export function identityService(context: HandlerContext, options: IdentityOptions): UntypedServiceImplementation {
  return {
    GetPluginInfo: unaryHandler(context, 'GetPluginInfo', async () => ({
      name: csiDriverName,
      vendor_version: csiDriverVersion,
      manifest: { project: 'rdl' },
    })),
    GetPluginCapabilities: unaryHandler(context, 'GetPluginCapabilities', async () => ({
      capabilities: [{ service: { type: 'CONTROLLER_SERVICE' } }, { volume_expansion: { type: volumeExpansionType } }],
    })),
    Probe: unaryHandler(context, 'Probe', async () => ({ ready: { value: options.isReady() } })),
  };
}
