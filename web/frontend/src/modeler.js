// Editors for process designers: a BPMN modeler with the Camunda 7
// properties panel, and a DMN decision-table editor.
//
// A page calls window.ProvisioningModeler.openModeler({...}) or
// window.ProvisioningModeler.openDmnEditor({...}); both return at once an
// object whose getXml() waits for the import to finish.

import BpmnModeler from 'bpmn-js/lib/Modeler';
import {
  BpmnPropertiesPanelModule,
  BpmnPropertiesProviderModule,
  CamundaPlatformPropertiesProviderModule,
} from 'bpmn-js-properties-panel';
import CamundaBehaviorsModule from 'camunda-bpmn-js-behaviors/lib/camunda-platform';
import camundaBpmnModdle from 'camunda-bpmn-moddle/resources/camunda.json';
import DmnModeler from 'dmn-js/lib/Modeler';
import camundaDmnModdle from 'camunda-dmn-moddle/resources/camunda.json';

function findElement(id, option) {
  if (!id) {
    throw new Error(`ProvisioningModeler: the option "${option}" is missing; pass the id of a container element.`);
  }

  const element = document.getElementById(id);
  if (!element) {
    throw new Error(
      `ProvisioningModeler: no element with id "${id}" (option "${option}") on this page; ` +
        'add the container element before opening the editor.'
    );
  }

  return element;
}

// bpmn-js's own empty diagram is not executable, which the first Validate
// refuses; a new diagram here starts as an executable process.
const NEW_DIAGRAM = `<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI"
    xmlns:dc="http://www.omg.org/spec/DD/20100524/DC"
    id="Definitions_1" targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="Process_1" isExecutable="true">
    <bpmn:startEvent id="StartEvent_1" />
  </bpmn:process>
  <bpmndi:BPMNDiagram id="BPMNDiagram_1">
    <bpmndi:BPMNPlane id="BPMNPlane_1" bpmnElement="Process_1">
      <bpmndi:BPMNShape id="StartEvent_1_di" bpmnElement="StartEvent_1">
        <dc:Bounds x="173" y="102" width="36" height="36" />
      </bpmndi:BPMNShape>
    </bpmndi:BPMNPlane>
  </bpmndi:BPMNDiagram>
</bpmn:definitions>
`;

// Call ``callback`` whenever the diagram is edited (each command, undo and
// redo). dmn-js keeps one command stack per view, so each view opened is
// watched as it appears.
function watchChanges(editor, ready, callback) {
  if (typeof editor.getActiveViewer !== 'function') {
    editor.on('commandStack.changed', callback);
    return;
  }

  const watched = new WeakSet();
  const watchActiveView = () => {
    const viewer = editor.getActiveViewer();
    if (viewer && !watched.has(viewer)) {
      watched.add(viewer);
      viewer.get('eventBus').on('commandStack.changed', callback);
    }
  };
  editor.on('views.changed', watchActiveView);
  ready.then(watchActiveView, () => {});
}

function editorHandle(editor, ready) {
  // Keep a rejected import from surfacing as an unhandled rejection; the
  // page sees it through ready or getXml().
  ready.catch(() => {});

  return {
    editor,
    ready,
    onChange(callback) {
      watchChanges(editor, ready, callback);
    },
    async getXml() {
      await ready;
      const { xml } = await editor.saveXML({ format: true });
      return xml;
    },
    destroy() {
      editor.destroy();
    },
  };
}

/**
 * Open the BPMN modeler with the Camunda 7 properties panel.
 *
 * Takes {canvasId, propertiesId, xml}; without xml a new diagram holding an
 * executable process with a start event is opened. Returns {editor, ready,
 * getXml(), onChange(callback), destroy()}: ready is a promise of the import
 * warnings and rejects when the XML cannot be read.
 */
export function openModeler({ canvasId, propertiesId, xml } = {}) {
  const container = findElement(canvasId, 'canvasId');
  findElement(propertiesId, 'propertiesId');

  const modeler = new BpmnModeler({
    container,
    propertiesPanel: { parent: '#' + propertiesId },
    additionalModules: [
      BpmnPropertiesPanelModule,
      BpmnPropertiesProviderModule,
      CamundaPlatformPropertiesProviderModule,
      CamundaBehaviorsModule,
    ],
    moddleExtensions: { camunda: camundaBpmnModdle },
  });

  const imported = modeler.importXML(xml || NEW_DIAGRAM);
  const ready = imported.then(
    ({ warnings }) => {
      modeler.get('canvas').zoom('fit-viewport', 'auto');
      return warnings;
    },
    (error) => {
      throw new Error(`The BPMN diagram could not be opened: ${error.message}`);
    }
  );

  return editorHandle(modeler, ready);
}

function openDecisionTable(dmnModeler) {
  const table = dmnModeler.getViews().find((view) => view.type === 'decisionTable');

  if (!table) {
    throw new Error(
      'The DMN file has no decision table; add a decision with a decision table and open it again.'
    );
  }

  return dmnModeler.open(table);
}

/**
 * Open the DMN editor on the first decision table of the given XML.
 *
 * Takes {containerId, xml}. Returns {editor, ready, getXml(),
 * onChange(callback), destroy()}:
 * ready is a promise of the import warnings and rejects when the XML cannot
 * be read or holds no decision table.
 */
export function openDmnEditor({ containerId, xml } = {}) {
  const container = findElement(containerId, 'containerId');

  const dmnModeler = new DmnModeler({
    container,
    moddleExtensions: { camunda: camundaDmnModdle },
  });

  const ready = (async () => {
    if (!xml) {
      throw new Error('The DMN editor needs the XML of a decision; none was given.');
    }

    let warnings;
    try {
      ({ warnings } = await dmnModeler.importXML(xml));
    } catch (error) {
      throw new Error(`The DMN decision could not be opened: ${error.message}`);
    }
    await openDecisionTable(dmnModeler);

    return warnings;
  })();

  return editorHandle(dmnModeler, ready);
}

window.ProvisioningModeler = { openModeler, openDmnEditor };
