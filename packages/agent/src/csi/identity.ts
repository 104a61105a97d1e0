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
 * The Identity service. Capabilities are the same whatever the mode (controller, node or all),
 * as the spec requires of every instance of one plugin version: the controller service, and
 * ONLINE volume expansion (rdl grows a volume while it is attached; see docs/csi.md for what the
 * kernel NBD device needs on the node).
 */
export function identityService(context: HandlerContext, options: IdentityOptions): UntypedServiceImplementation {
  return {
    GetPluginInfo: unaryHandler(context, 'GetPluginInfo', async () => ({
      name: csiDriverName,
      vendor_version: csiDriverVersion,
      manifest: { project: 'rdl' },
    })),
    GetPluginCapabilities: unaryHandler(context, 'GetPluginCapabilities', async () => ({
      capabilities: [{ service: { type: 'CONTROLLER_SERVICE' } }, { volume_expansion: { type: 'ONLINE' } }],
    })),
    Probe: unaryHandler(context, 'Probe', async () => ({ ready: { value: options.isReady() } })),
  };
}
