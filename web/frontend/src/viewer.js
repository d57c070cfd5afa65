// Read-only BPMN diagram for request and process-instance pages.
//
// A page calls window.ProvisioningDiagram.showDiagram(containerId, xml, options)
// to draw a process model and mark the path a process instance has taken.

import NavigatedViewer from 'bpmn-js/lib/NavigatedViewer';

export const CURRENT_MARKER = 'highlight-current';
export const COMPLETED_MARKER = 'highlight-completed';

// One viewer per container, so that drawing again into the same container
// (for example after an htmx swap refreshed the data) does not stack canvases.
const viewersByContainer = new Map();

function findContainer(containerId) {
  const container = document.getElementById(containerId);

  if (!container) {
    throw new Error(
      `ProvisioningDiagram: no element with id "${containerId}" on this page; ` +
        'add <div id="' + containerId + '"></div> before calling showDiagram.'
    );
  }

  return container;
}

function showError(container, message) {
  const box = document.createElement('div');
  box.className = 'provisioning-diagram-error';
  box.textContent = message;
  container.appendChild(box);
}

function addMarkers(viewer, ids, marker) {
  const elementRegistry = viewer.get('elementRegistry');
  const canvas = viewer.get('canvas');
  const missing = [];

  for (const id of ids || []) {
    if (elementRegistry.get(id)) {
      canvas.addMarker(id, marker);
    } else {
      missing.push(id);
    }
  }

  return missing;
}

/**
 * Draw a BPMN diagram read-only and mark the current and completed elements.
 *
 * Returns a promise of {viewer, warnings, missing}: the bpmn-js viewer, the
 * import warnings, and the highlight ids that the diagram does not contain.
 * Rejects (after writing the reason into the container) when the XML cannot
 * be read.
 */
export async function showDiagram(containerId, xml, options = {}) {
  const container = findContainer(containerId);
  const current = new Set(options.highlight || []);
  // An element that is both passed and current (a loop) shows as current.
  const completed = (options.completed || []).filter((id) => !current.has(id));

  const previous = viewersByContainer.get(containerId);
  if (previous) {
    previous.destroy();
  }
  container.querySelectorAll('.provisioning-diagram-error').forEach((el) => el.remove());

  const viewer = new NavigatedViewer({ container });
  viewersByContainer.set(containerId, viewer);

  let warnings;
  try {
    ({ warnings } = await viewer.importXML(xml));
  } catch (error) {
    const message = `The process diagram could not be drawn: ${error.message}`;
    // An empty canvas above the message would only confuse the reader.
    viewer.destroy();
    viewersByContainer.delete(containerId);
    showError(container, message);
    throw new Error(message);
  }

  viewer.get('canvas').zoom('fit-viewport', 'auto');
  const missing = [
    ...addMarkers(viewer, completed, COMPLETED_MARKER),
    ...addMarkers(viewer, [...current], CURRENT_MARKER),
  ];
  if (missing.length) {
    console.warn('ProvisioningDiagram: no diagram element with id %s', missing.join(', '));
  }

  return { viewer, warnings, missing };
}

window.ProvisioningDiagram = { showDiagram, CURRENT_MARKER, COMPLETED_MARKER };
